"""``xcam view``: a live viewer in the browser (a Gradio app on 127.0.0.1 by default). The model is loaded once;
``Viewer`` keeps one capture per image and layer (the top-k classes' gradients in one go, other classes on demand)
and the maps it made, so a change of method, class, alpha or colormap only runs the core's formula on cached
arrays. Every map comes from ``xcam.pipeline.compute_cam``; every picture from ``xcam.viz``; the app computes
nothing of its own. Bad input (a file that is not an image, a layer without a spatial output) is a message on the
page, never a dead server."""

import dataclasses
import hashlib
import html
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from xcam.app.engines.batch import safe_name
from xcam.app.inputs.images import load_image, preprocess
from xcam.app.outputs import files
from xcam.errors import XcamError
from xcam.layers import check_layer, default_layer
from xcam.methods import get_method, method_names, resolve_options
from xcam.notebook import show
from xcam.pipeline import capture_asks, compute_cam
from xcam.targets import Class
from xcam.viz import COLORMAPS, feature_grid

DEFAULT_PORT = 8000
LOCAL_HOST = "127.0.0.1"
TOP_K = 5             # classes captured together per image and layer (their gradients in one capture)
SHOWN_SIDE = 448      # the longer side of the pictures on the page and of the downloaded overlays
MAP_CACHE = 512       # maps kept (image, layer, method, class); each is one float32 (H, W) at the input size
INSTALL = "the viewer needs Gradio: pip install 'xcam[view]'"


@dataclass
class Picture:
    """One image the viewer can show: its name, the picture shown on the page and the model's input."""

    key: str
    name: str
    shown: np.ndarray   # uint8 RGB, longer side at most SHOWN_SIDE
    x: np.ndarray       # (1, H, W, C) float32, preprocessed as the model takes it


class Viewer:
    """The state behind ``xcam view``: a model, its layers, its images and the caches. Thread-safe: one model
    call at a time (the lock), whichever browser tab asks."""

    def __init__(self, framework, model, model_name: str, images=(), labels=None, layer=None, input_size=None,
                 normalize="imagenet", top_k: int = TOP_K, capture_options=None):
        self.framework, self.model, self.model_name = framework, model, model_name
        self.normalize, self.capture_options = normalize, dict(capture_options or {})
        self.channels, self.hw = framework.input_spec(model, input_size)
        if len(self.hw) != 2:
            raise XcamError(f"xcam view shows images; this model takes inputs of spatial rank {len(self.hw)}")
        self.records = framework.layer_records(model, self.channels, self.hw)
        self.default_layer = check_layer(self.records, layer).name if layer else default_layer(self.records).name
        self.top_k = max(1, int(top_k))
        self.pictures: dict[str, Picture] = {}
        self._captures: dict = {}    # (key, layer) -> (Capture of the top-k classes, [their indices])
        self._top: dict = {}         # key -> the image's top-k classes, most probable first
        self._extra: dict = {}       # (key, layer, class or (method, class)) -> one-class Capture
        self._heads: dict = {}       # layer -> head weights (or the XcamError saying why there are none)
        self._grids: dict = {}       # (key, layer) -> feature grid (uint8 RGB)
        self._maps: OrderedDict = OrderedDict()  # (key, layer, method, class) -> (H, W) map in [0, 1]
        self._lock = threading.RLock()
        self.captures_made = 0       # model captures run so far (the tests check the caches with it)
        self.renders = 0             # render() calls so far (the page shows the count: tests wait on it)
        self.num_classes = self._classes_of_model()
        self.labels = list(labels) if labels else [f"class {c}" for c in range(self.num_classes)]
        if len(self.labels) != self.num_classes:
            raise XcamError(f"{len(self.labels)} labels given but the model has {self.num_classes} classes")
        for path in images:
            self.add(path)

    def _classes_of_model(self) -> int:
        x = np.zeros((1, *self.hw, self.channels), np.float32)
        cap = self.framework.capture(self.model, x, self.default_layer, gradients=False, **self.capture_options)
        if cap.scores.ndim != 2:
            raise XcamError(f"xcam view explains classifiers (logits (N, K)); this model's output has shape "
                            f"{cap.scores.shape}")
        return int(cap.scores.shape[1])

    # images ---------------------------------------------------------------------------------------------------
    def add(self, path, name: str | None = None) -> str:
        """Read an image file (a bundled photo or an upload) and keep it; returns its key. A file that is not
        an image is the one-line XcamError of ``load_image``."""
        name = name or Path(path).name
        rgb = load_image(path, name=name)
        key = f"{Path(name).stem}-{hashlib.sha1(rgb.tobytes()).hexdigest()[:8]}"
        if key not in self.pictures:
            x = preprocess([rgb], self.hw, self.normalize, self.channels)
            self.pictures[key] = Picture(key, name, _shrunk(rgb, SHOWN_SIDE), x)
        return key

    def picture(self, key: str) -> Picture:
        if key not in self.pictures:
            raise XcamError(f"no image {key!r} in the viewer; pick one of: {', '.join(self.pictures)}")
        return self.pictures[key]

    # layers and classes ---------------------------------------------------------------------------------------
    def layer_choices(self) -> list[tuple[str, str]]:
        """(shown text, name) for every layer, its output shape and whether a CAM can use it."""
        out = []
        for r in self.records:
            shape = "x".join(str(s) for s in r.shape[1:]) if r.shape else "-"
            mark = " (default)" if r.name == self.default_layer else "" if r.cam_ready else " (no spatial output)"
            out.append((f"{r.name}  {shape}{mark}", r.name))
        return out

    def capture(self, key: str, layer: str):
        """The cached capture of the image at the layer with the gradients of its top-k classes (every class when
        the model has at most k), and the top-k classes, most probable first."""
        with self._lock:
            if (key, layer) not in self._captures:
                check_layer(self.records, layer)
                x = self.picture(key).x
                if key not in self._top and self.num_classes > self.top_k:  # one forward finds the top k
                    scores = self.framework.capture(self.model, x, layer, gradients=False,
                                                    **self.capture_options).scores[0]
                    self._top[key] = _ranked(scores, self.top_k)
                    self.captures_made += 1
                classes = self._top.get(key, list(range(self.num_classes)))
                cap = self.framework.capture(self.model, x, layer, classes=classes, gradients=True,
                                             **self.capture_options)
                self.captures_made += 1
                self._top.setdefault(key, _ranked(cap.scores[0], self.top_k))
                self._captures[key, layer] = (cap, classes)
            return self._captures[key, layer][0], self._top[key]

    def predictions(self, key: str, layer: str | None = None) -> list[tuple[int, str, float]]:
        """(class, label, probability) of the image's top-k classes, most probable first."""
        cap, top = self.capture(key, layer or self.default_layer)
        probs = cap.probabilities[0]
        return [(c, self.labels[c], float(probs[c])) for c in top]

    def class_index(self, token) -> int:
        """A class given as an index or a label name."""
        if isinstance(token, (int, np.integer)) or str(token).lstrip("-").isdigit():
            c = int(token)
            if not 0 <= c < self.num_classes:
                raise XcamError(f"class {c} is out of range: the model has classes 0..{self.num_classes - 1}")
            return c
        if token in self.labels:
            return self.labels.index(token)
        raise XcamError(f"unknown class {token!r}: give an index 0..{self.num_classes - 1} or a label name")

    def _one_class(self, key: str, layer: str, method, c: int):
        """A one-class capture for ``c``: sliced from the top-k capture, or captured once on demand (a class
        outside the top k; a method that explains a target of its own, such as finercam, or asks the capture for
        more, as shapleycam's Hessian-vector product and legrad's attention arrays)."""
        if method.explains is not None or capture_asks(method):
            extra = (key, layer, (method.name, c))
            if extra not in self._extra:
                target = Class([c]) if method.explains is None else \
                    method.explains(Class([c]), resolve_options(method, None))
                self._extra[extra] = self.framework.capture(self.model, self.picture(key).x, layer, targets=target,
                                                            gradients=True, **capture_asks(method),
                                                            **self.capture_options)
                self.captures_made += 1
            cap = self._extra[extra]
        else:
            self.capture(key, layer)
            cap, captured = self._captures[key, layer]
            if c in captured:
                j = captured.index(c)
                cap = dataclasses.replace(cap, gradients=cap.gradients[:, j], targets=cap.targets[:, j].copy(),
                                          target=Class(cap.targets[:, j].copy()),
                                          target_scores=None if cap.target_scores is None else
                                          cap.target_scores[:, j])
            else:
                if (key, layer, c) not in self._extra:
                    self._extra[key, layer, c] = self.framework.capture(
                        self.model, self.picture(key).x, layer, targets=[c], gradients=True, **self.capture_options)
                    self.captures_made += 1
                cap = self._extra[key, layer, c]
        if method.needs_head:
            cap = dataclasses.replace(cap, head_weights=self._head(key, layer))
        return cap

    def _head(self, key: str, layer: str) -> np.ndarray:
        if layer not in self._heads:
            try:
                self._heads[layer] = self.framework.capture(self.model, self.picture(key).x, layer, gradients=False,
                                                            head=True, **self.capture_options).head_weights
            except XcamError as exc:
                self._heads[layer] = exc
        if isinstance(self._heads[layer], XcamError):
            raise self._heads[layer]
        return self._heads[layer]

    # maps and pictures -----------------------------------------------------------------------------------------
    def map(self, key: str, layer: str, method: str, c: int) -> np.ndarray:
        """The method's map of class ``c`` for the image at the layer, (H, W) float32 in [0, 1] at the model's
        input size (``compute_cam`` on the cached capture; probe methods run the model through the adapter)."""
        m = get_method(method)
        ident = (key, layer, m.name, int(c))
        with self._lock:
            if ident in self._maps:
                self._maps.move_to_end(ident)
                return self._maps[ident]
            cap = self._one_class(key, layer, m, int(c))
            probe = None
            if m.needs_probe:
                output = {k: v for k, v in self.capture_options.items() if k == "output"}
                probe = self.framework.probe(self.model, self.picture(key).x, layer, **output)
            heat = compute_cam(cap, m, size=self.hw, model_inputs=None if probe is None else probe.inputs,
                               probe=probe)[0]
            self._maps[ident] = heat
            while len(self._maps) > MAP_CACHE:
                self._maps.popitem(last=False)
            return heat

    def features(self, key: str, layer: str) -> np.ndarray:
        """The layer's feature-map grid for the image (``xcam.viz.feature_grid``), cached."""
        with self._lock:
            if (key, layer) not in self._grids:
                cap, _ = self.capture(key, layer)
                if cap.rank != 2:
                    raise XcamError(f"layer {layer!r} has a spatial rank of {cap.rank}; the grid shows 2-D maps")
                self._grids[key, layer] = feature_grid(cap.activations[0])
            return self._grids[key, layer]

    def render(self, key: str, layer: str, methods, classes, alpha: float = 0.5, colormap: str = "jet") -> dict:
        """Everything the page shows for one choice: ``maps`` {(method, label): map}, ``tiles`` [(title,
        overlay)] and ``seconds`` (the server time of this call)."""
        start = time.perf_counter()
        if not methods:
            raise XcamError(f"pick at least one method (any of: {', '.join(method_names())})")
        if colormap not in COLORMAPS:
            raise XcamError(f"unknown colormap {colormap!r}; valid: {', '.join(COLORMAPS)}")
        pic = self.picture(key)
        chosen = [self.class_index(c) for c in classes] if classes else [self.predictions(key, layer)[0][0]]
        maps = {(m, self.labels[c]): self.map(key, layer, m, c) for m in methods for c in chosen}
        grid = show(pic.shown, {f"{m} · {label}": heat for (m, label), heat in maps.items()}, alpha=alpha,
                    colormap=colormap)
        self.renders += 1
        return {"maps": maps, "tiles": grid.tiles, "html": grid._repr_html_(),
                "seconds": time.perf_counter() - start, "number": self.renders}


def _ranked(scores: np.ndarray, k: int) -> list[int]:
    """The k highest-scoring classes, best first (ties: the lower index first)."""
    return [int(c) for c in np.argsort(-scores, kind="stable")[:k]]


def _shrunk(rgb: np.ndarray, side: int) -> np.ndarray:
    """The picture with its longer side at most ``side`` (area interpolation)."""
    h, w = rgb.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale >= 1.0:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def respond(viewer: Viewer, key: str, layer: str, methods, classes, alpha: float, colormap: str,
            downloads: Path) -> dict:
    """What the page does on a change: ``Viewer.render`` and the downloads of what it shows (each map as .npy,
    its overlay as PNG, under ``downloads/<image>/<layer>/``); ``seconds`` is the server time of both."""
    start = time.perf_counter()
    out = viewer.render(key, layer, methods, classes, alpha, colormap)
    folder = Path(downloads) / key / layer
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ((m, label), heat), (_, pic) in zip(out["maps"].items(), out["tiles"][1:]):  # tile 0: the image
        stem = f"{m}_{safe_name(label)}"
        files.write_npy(folder / f"{stem}.npy", heat)
        files.write_png(folder / f"{stem}.png", pic, photo=True)
        paths += [str(folder / f"{stem}.npy"), str(folder / f"{stem}.png")]
    return {**out, "paths": paths, "seconds": time.perf_counter() - start}


def where_note(host: str, port: int) -> str:
    """What the page says about where it listens."""
    if host in (LOCAL_HOST, "localhost", "::1"):
        return (f"Listening on http://{host}:{port}, this machine only (`--host` binds another address).")
    return (f"Listening on {host}:{port}, bound with `--host`: **other machines that reach this address can use "
            "the model and upload images**.")


# the Gradio app -------------------------------------------------------------------------------------------------

def _gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home, ever
    try:
        import gradio
    except ImportError:
        raise XcamError(INSTALL) from None
    return gradio


CSS = """
#xcam-maps figure { margin: 2px; width: 300px; max-width: 100%; }
#xcam-maps img { width: 100%; height: auto; }
#xcam-message { color: #b00020; }
"""


def build_app(viewer: Viewer, host: str = LOCAL_HOST, port: int = DEFAULT_PORT, downloads: Path | None = None):
    """The Gradio Blocks of the viewer: pick an image (or upload one), a layer, methods, classes, alpha and a
    colormap; the maps side by side, the layer's feature grid, downloads of the maps (.npy) and overlays (PNG)."""
    gr = _gradio()
    downloads = Path(downloads or tempfile.mkdtemp(prefix="xcam-view-"))
    names = {key: pic.name for key, pic in viewer.pictures.items()}
    first = next(iter(viewer.pictures), None)

    def class_choices(key, layer):
        top = viewer.predictions(key, layer)
        shown = [(f"{label} ({p:.3f})", c) for c, label, p in top]
        rest = [(label, c) for c, label in enumerate(viewer.labels) if c not in {t[0] for t in top}]
        return shown + rest, top

    def guarded(fn, fallback):
        def wrapped(*args):
            try:
                return fn(*args)
            except XcamError as exc:
                return fallback(f"⚠ {exc}")
            except Exception as exc:  # the page says what went wrong; the server stays up
                first_line = str(exc).splitlines()[0] if str(exc) else ""
                return fallback(f"⚠ unexpected {type(exc).__name__}: {first_line}")
        return wrapped

    def select(key, layer, chosen=None):
        """Image or layer changed: the class choices (top-k first; a new image starts on its top class, a new
        layer keeps the classes chosen), the predictions and the feature grid."""
        choices, top = class_choices(key, layer)
        text = ", ".join(f"**{label}** {p:.3f}" for _, label, p in top)
        return (gr.update(choices=choices, value=chosen or [top[0][0]]), f"Predicted: {text}",
                viewer.features(key, layer), "")

    def render(key, layer, methods, classes, alpha, colormap):
        out = respond(viewer, key, layer, methods, classes, float(alpha), colormap, downloads)
        took = (f'<span id="xcam-time" data-seconds="{out["seconds"]:.4f}" data-render="{out["number"]}">'
                f'server time {out["seconds"]:.3f} s</span>')
        return f'<div id="xcam-maps">{out["html"]}</div>', out["paths"], took, ""

    def upload(path, current):
        if not path:
            return gr.update(), ""
        key = viewer.add(path, name=Path(path).name)
        names[key] = viewer.pictures[key].name
        return gr.update(choices=[(n, k) for k, n in names.items()], value=key), ""

    with gr.Blocks(title="xcam view", analytics_enabled=False) as app:
        gr.Markdown(f"## xcam view: {html.escape(viewer.model_name)}\n{where_note(host, port)}",
                    elem_id="xcam-where")
        message = gr.Markdown("", elem_id="xcam-message")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                image = gr.Dropdown([(n, k) for k, n in names.items()], value=first, label="Image",
                                    elem_id="xcam-image")
                uploaded = gr.File(label="Upload an image", type="filepath", height=110, elem_id="xcam-upload")
                layer = gr.Dropdown(viewer.layer_choices(), value=viewer.default_layer, label="Layer",
                                    elem_id="xcam-layer")
                methods = gr.Dropdown(method_names(), value=["gradcam"], multiselect=True, label="Methods",
                                      elem_id="xcam-methods")
                classes = gr.Dropdown([], multiselect=True, label="Classes (top-k with probabilities, or any by "
                                      "name)", elem_id="xcam-classes")
                alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Alpha", elem_id="xcam-alpha")
                colormap = gr.Dropdown(list(COLORMAPS), value="jet", label="Colormap", elem_id="xcam-colormap")
            with gr.Column(scale=3):
                predicted = gr.Markdown("", elem_id="xcam-predicted")
                took = gr.HTML("", elem_id="xcam-took")
                shown = gr.HTML("", elem_id="xcam-shown")
                saved = gr.File(label="Downloads: maps (.npy) and overlays (PNG)", file_count="multiple",
                                elem_id="xcam-downloads")
                grid = gr.Image(label="Feature maps of the layer", type="numpy", interactive=False,
                                elem_id="xcam-features")

        pick = [image, layer]
        look = [image, layer, methods, classes, alpha, colormap]
        select_out = [classes, predicted, grid, message]
        render_out = [shown, saved, took, message]
        on_select = guarded(select, lambda text: (gr.update(), "", None, text))
        on_render = guarded(render, lambda text: ("", [], "", text))
        on_upload = guarded(upload, lambda text: (gr.update(), text))

        image.change(on_select, pick, select_out).then(on_render, look, render_out)
        layer.change(on_select, [image, layer, classes], select_out).then(on_render, look, render_out)
        app.load(on_select, pick, select_out).then(on_render, look, render_out)
        for control in (methods, classes, colormap):  # user input only: select() sets classes itself
            control.input(on_render, look, render_out)
        alpha.change(on_render, look, render_out, trigger_mode="always_last")  # dragging: the last value wins
        uploaded.upload(on_upload, [uploaded, image], [image, message])
    app.xcam_downloads = downloads
    return app


def serve(viewer: Viewer, host: str = LOCAL_HOST, port: int = DEFAULT_PORT, block: bool = True, log=sys.stderr):
    """Start the viewer on ``host:port``; with ``block`` (the CLI) until Ctrl+C, else return the running app
    (``app.close()`` stops it)."""
    gr = _gradio()
    app = build_app(viewer, host, port)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])  # no web fonts
    try:
        app.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, share=False,
                   inbrowser=False, theme=theme, css=CSS, footer_links=[], allowed_paths=[str(app.xcam_downloads)],
                   ssr_mode=False)
    except OSError as exc:
        raise XcamError(f"cannot listen on {host}:{port}: {exc} (choose another --port)") from None
    if log is not None:
        where = "this machine only" if host == LOCAL_HOST else "bound with --host"
        print(f"xcam: viewer on http://{host}:{port} ({where}; Ctrl+C stops)", file=log)
    if not block:
        return app
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
        shutil.rmtree(app.xcam_downloads, ignore_errors=True)
    return 0
