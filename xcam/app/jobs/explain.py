"""The lab in one call: for every image, the layer's feature grid and each method's map for each class,
written as PNG overlays and .npy maps, with results.jsonl (a line per image, as it goes), summary.json and a
report (one self-contained page, or an index with pages for large runs). Videos, volumes and signals
(``inputs.kinds``) take the same path: each method's map (.npy), a picture (a clip's strip of frames and an
overlay MP4, a volume's montage of slices, a signal's plot) and the same results, resume and engines.

Inputs stream through in fixed batches (``engines.local``: decoded in background threads), each batch staged
and moved into place before its lines are appended (``outputs.results``), so an interrupted run resumes with
``resume=True`` and ends with the same files as an uninterrupted one. ``engine="ray"`` runs the same
per-batch function (``engines.batch``) on a Ray cluster (``engines.ray``; ``explain_on_ray`` from Python).
"""

import contextlib
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from xcam.app.engines.batch import MAP_DTYPES, MAP_SIZES, MEMORY_FORMATS, TOP1_COLUMN, Plan, load_one
from xcam.app.engines.local import batches_of, local_batches
from xcam.app.engines.ray import ray_batches
from xcam.app.inputs.images import parse_normalization
from xcam.app.inputs.kinds import input_kind, media_norm, split_inputs
from xcam.app.inputs.sources import expand_images
from xcam.app.outputs import files, results
from xcam.app.outputs.report import REPORT_MODES, SINGLE_PAGE_LIMIT, write_report
from xcam.errors import XcamError
from xcam.layers import check_layer, default_layer
from xcam.methods import get_method
from xcam.targets import Class, Segmentation, as_target, parse_target

ENGINES = ("local", "ray")


@dataclass
class Job:
    """One ``xcam explain`` run: the model, images, methods, classes and where the outputs go."""

    framework: object             # xcam.app.models.frameworks.Framework
    model: object
    model_name: str
    images: list
    out: Path
    methods: list = field(default_factory=lambda: ["gradcam", "layercam"])
    classes: list | None = None   # ints or label names; None or ["top1"] = each image's top-1; ["all"]
    labels: list | None = None
    layer: str | None = None
    input_size: int | None = None
    normalize: str = "imagenet"
    overwrite: bool = False
    batch_size: int = 8
    alpha: float = 0.5
    colormap: str = "jet"
    log: object = sys.stderr
    shown_out: Path | None = None  # where the output ends up, if `out` is a staging directory
    resume: bool = False           # go on with an interrupted run in `out` (same settings), or start one
    report: str = "auto"           # "single" page, "paged" (index + pages of 100), "auto": single up to 100
    map_size: str = "input"        # maps at the "input" size or at the "layer"'s own resolution
    map_dtype: str = "float32"     # or "float16" (half the disk)
    overlays: bool = True          # overlay PNGs per map
    features: bool = True          # the layer's feature grid PNG per image
    capture_options: dict = field(default_factory=dict)  # extra keywords for the adapter's capture (output=...)
    target: str | None = None     # a target spec ("class:281", "segmentation:15", "binary"); replaces classes
    engine: str = "local"          # "local" (this process) or "ray" (needs model_spec)
    model_spec: object = None      # xcam.app.models.modelspec.ModelSpec: how a Ray actor builds the model
    address: str | None = None     # Ray cluster address (default: the running one, or a local cluster)
    workers: int | None = None     # Ray actors (default: one per GPU, else half the CPUs)
    decode_workers: int = 2        # background decoding threads of the local engine
    picture_threads: int | None = None  # threads drawing pictures beside the model (None: 2; 0: inline)
    frames: int = 16               # videos: frames sampled evenly per clip
    memory_format: str = "auto"    # PyTorch: "channels_last", "contiguous", or "auto" (channels-last for 2-D convs)
    report_extra: str = ""         # HTML placed below the report's rows (xcam demo: its evaluation section)


def parse_labels(spec) -> list[str] | None:
    """'cat,dog' or a file with one label a line."""
    if spec is None:
        return None
    path = Path(spec)
    if path.is_file():
        try:
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise XcamError(f"cannot read label file {str(path)!r}: {exc}") from None
    else:
        names = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not names:
        raise XcamError(f"no labels in {spec!r}")
    return names


def class_indices(tokens, labels, num_classes) -> list[int] | None:
    """--classes tokens -> indices (None = top-1): ints, label names, 'top1' or 'all'."""
    if not tokens or list(tokens) == ["top1"]:
        return None
    if list(tokens) == ["all"]:
        return list(range(num_classes))
    out = []
    for tok in tokens:
        tok = str(tok)
        if tok.lstrip("-").isdigit():
            out.append(int(tok))
        elif labels and tok in labels:
            out.append(labels.index(tok))
        else:
            valid = f"labels: {', '.join(labels)}" if labels else "give --labels to use names"
            raise XcamError(f"unknown class {tok!r}: use an index 0..{num_classes - 1}, 'top1', 'all', or a "
                            f"label name ({valid})")
    return out


def say(job, text):
    """``xcam: text`` on the job's log (nothing when the job is quiet)."""
    if job.log is not None:
        print(f"xcam: {text}", file=job.log)


def choose_layer(job) -> tuple[int, tuple, str]:
    """The model's input channels and size, and the job's layer: ``job.layer`` checked against the model's layers
    (a wrong name lists the nearest), else the last layer with a spatial output (said on the log)."""
    channels, hw = job.framework.input_spec(job.model, job.input_size)
    records = job.framework.layer_records(job.model, channels, hw)
    if job.layer and ({"call", "reshape", "layer_output"} & set(job.capture_options)):
        if job.layer not in {r.name for r in records}:   # a shared or undetected layer: the capture checks it
            check_layer(records, job.layer)
        return channels, hw, job.layer
    if job.layer:
        return channels, hw, check_layer(records, job.layer).name
    layer = default_layer(records).name
    say(job, f"explaining layer {layer} (the last layer with a spatial output; choose one with --layer)")
    return channels, hw, layer


RESERVED_KEYS = frozenset({"pages"})  # folders of the output that are not images


def unique_keys(paths) -> list[str]:
    """One output folder name per image: its file stem, then stem-2, stem-3, ... for repeats (never a name
    already taken, a hidden name, or a folder the report uses)."""
    keys, used = [], set()
    for p in paths:
        stem = Path(p).stem or "image"
        if stem.startswith(".") or stem in RESERVED_KEYS:
            stem = "_" + stem
        key, n = stem, 1
        while key in used:
            n += 1
            key = f"{stem}-{n}"
        used.add(key)
        keys.append(key)
    return keys


def _choice(name, value, valid):
    if value not in valid:
        raise XcamError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


def _check_options(job):
    _choice("--report", job.report, REPORT_MODES)
    _choice("--map-size", job.map_size, MAP_SIZES)
    _choice("--map-dtype", job.map_dtype, MAP_DTYPES)
    _choice("--engine", job.engine, ENGINES)
    _choice("--memory-format", job.memory_format, MEMORY_FORMATS)
    if int(job.batch_size) < 1:
        raise XcamError(f"--batch-size must be at least 1, got {job.batch_size}")
    if job.workers is not None and int(job.workers) < 1:
        raise XcamError(f"--workers must be at least 1, got {job.workers}")
    if job.engine == "ray" and job.model_spec is None:
        raise XcamError("engine 'ray' needs a model_spec (xcam.app.models.modelspec.ModelSpec) to build the model in "
                        "each worker")


def _first_readable(plan, items):
    for index, key, path in items:
        loaded = load_one(plan, index, key, path)
        if loaded.error is None:
            return loaded
    what = "images" if plan.kind == "image" else "inputs"
    raise XcamError(f"none of the {len(items)} {what} could be read; the first: "
                    f"{load_one(plan, *items[0]).error}")


def _media_layer(job, first) -> str:
    """The layer of a video / volume / signal run: ``job.layer`` checked, else the default, over the layers
    listed on the first readable input's shape."""
    fw = job.framework
    records = fw.adapter.layer_records(job.model, fw.to_inputs(first.x[None]).shape[1:])
    if job.layer:
        return check_layer(records, job.layer).name
    layer = default_layer(records).name
    say(job, f"explaining layer {layer} (the last layer with a spatial output; choose one with --layer)")
    return layer


def _plan(job, methods, items, out, kind: str = "image") -> Plan:
    """The layer, classes and labels, checked on the first readable input before anything is written."""
    norm = parse_normalization(job.normalize) if isinstance(job.normalize, str) else job.normalize
    report = job.report if job.report != "auto" else "single" if len(items) <= SINGLE_PAGE_LIMIT else "paged"
    if kind == "media":
        channels, *spatial = job.framework.adapter.input_shape(job.model)
        rank, side = len(spatial), int(job.input_size or 112)
        hw, layer = (side, side), None
        for k in sorted({input_kind(p, rank) for _, _, p in items} - {"image"}):
            media_norm(norm, k)  # a normalization the kind does not take fails before any output
    elif job.layer and job.framework.name == "tf":
        # Keras's capture checks a named layer itself (unknown: the nearest names; shared; not spatial) on the
        # first image below, before any output: listing the layers (an eager forward, ~0.4 s) is not needed
        channels, hw = job.framework.input_spec(job.model, job.input_size)
        layer, rank, side = job.layer, 2, 112
    else:
        channels, hw, layer = choose_layer(job)
        rank, side = 2, 112
    plan = Plan(out=str(out.resolve()), layer=layer, channels=channels, input_size=tuple(hw), normalize=norm,
                methods=[m.name for m in methods], classes=None, labels=[], columns=[], map_size=job.map_size,
                map_dtype=job.map_dtype, overlays=job.overlays, features=job.features,
                thumbnails=report == "paged" and kind == "image", alpha=job.alpha, colormap=job.colormap,
                capture_options=dict(job.capture_options), root=os.getcwd(), target=job.target, kind=kind,
                rank=rank, frames=int(job.frames), side=side,
                memory_format=job.framework.run_format(job.model, job.memory_format, rank))
    target = parse_target(job.target) if job.target else None
    if target is not None and list(job.classes or ["top1"]) != ["top1"]:
        raise XcamError("give either --target or --classes, not both")
    first = _first_readable(plan, items)  # learn the class count, then check labels and classes
    if kind == "media":
        plan.layer = layer = _media_layer(job, first)
    # on Keras the checks take gradients when the methods do: one compiled step then serves the checks and the
    # batches (steps are cached per model, layer, target and gradients), not two traces of the model
    grads = job.framework.name == "tf" and any(m.needs_gradients for m in methods)
    cap = job.framework.capture(job.model, first.x[None], layer, targets=target, gradients=grads,
                                labels=job.labels if target is not None else None, **plan.capture_options)
    k = cap.scores.shape[1] if cap.scores.ndim >= 2 else 1
    labels = job.labels
    if labels is not None and len(labels) != k:
        raise XcamError(f"{len(labels)} labels given but the model has {k} classes")
    labels = list(labels or [str(i) for i in range(k)])
    if target is not None:
        plan.labels, plan.classes, plan.columns = labels, None, [target_column(target, labels)]
        plan.report = report
        return plan
    classes = class_indices(job.classes, labels, k)
    if classes is not None:
        job.framework.capture(job.model, first.x[None], layer, classes=classes, gradients=grads, labels=labels,
                              **plan.capture_options)  # a class out of range fails here, before any output
    plan.labels, plan.classes = labels, classes
    plan.columns = [labels[c] for c in classes] if classes is not None else [TOP1_COLUMN]
    plan.report = report
    return plan


def target_column(target, labels) -> str:
    """The report column of a --target: the label of its class where it has one, else its kind."""
    index = target.index if isinstance(target, Class) else target.cls if isinstance(target, Segmentation) else None
    if isinstance(index, int) and 0 <= index < len(labels):
        return f"{target.kind} {labels[index]}"
    return target.kind


def _jsonable(options: dict) -> dict:
    return {k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v) for k, v in options.items()}


def _settings(job, plan, paths) -> dict:
    """What must not change between an interrupted run and its resumption (written to run.json)."""
    digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()
    norm = plan.normalize if isinstance(plan.normalize, str) else [list(v) for v in plan.normalize]
    return {"model": job.model_name, "framework": job.framework.name, "layer": plan.layer,
            "input_size": list(plan.input_size), "channels": plan.channels, "normalize": norm,
            "methods": plan.methods, "classes": plan.classes, "labels": plan.labels, "columns": plan.columns,
            "batch_size": int(job.batch_size), "map_size": plan.map_size, "map_dtype": plan.map_dtype,
            "overlays": plan.overlays, "features": plan.features, "report": plan.report, "alpha": plan.alpha,
            "colormap": plan.colormap, "capture_options": _jsonable(plan.capture_options), "target": plan.target,
            "images": len(paths),
            "images_sha256": digest, **({"kind": "media", "frames": plan.frames} if plan.kind == "media" else {}),
            **({"memory_format": plan.memory_format} if plan.memory_format != "contiguous" else {})}


def _progress_bar(job, total, initial):
    log = job.log
    quiet = log is None or not getattr(log, "isatty", lambda: False)()
    return tqdm(total=total, initial=initial, unit="img", file=log if log is not None else sys.stderr,
                disable=quiet, dynamic_ncols=True, smoothing=0.1)


def run(job: Job) -> int:
    """Explain every image; returns the exit code (0 all done, 1 some images could not be read)."""
    _check_options(job)
    methods = [get_method(m) for m in job.methods]
    out = Path(job.out)
    resuming = job.resume and out.exists()
    if not resuming:
        files.check_new_dir(out, job.overwrite)
    if not job.images:
        raise XcamError("no images given")
    paths, kind = _inputs(job.images)
    keys = unique_keys(paths) if kind == "image" else media_keys(paths)
    items = list(zip(range(len(paths)), keys, paths))
    plan = _plan(job, methods, items, out, kind)
    settings = _settings(job, plan, paths)
    batches = batches_of(items, int(job.batch_size))
    if resuming:
        done = results.resume(out, settings, [len(b) for b in batches])
        say(job, f"resuming {out}: {min(len(paths), done * int(job.batch_size))} of {len(paths)} images done")
    else:
        if out.exists():  # --overwrite
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        results.start(out, settings)
        done = 0
    todo = [(b, batches[b]) for b in range(done, len(batches))]
    with _progress_bar(job, len(paths), sum(len(b) for b in batches[:done])) as bar, \
            contextlib.closing(_engine(job, plan, todo)) as explained:  # closed: the model is restored at once
        for batch_no, lines in explained:
            results.commit(out, batch_no, lines)
            for line in lines:
                if line.get("error") and job.log is not None:
                    bar.write(f"xcam: error: {line['error']}", file=job.log)
            bar.update(len(lines))
    results.finish(out)
    header = {k: settings[k] for k in ("model", "framework", "layer", "input_size", "normalize")}
    if plan.kind == "media":
        header.update(input_kind="media", frames=plan.frames)
    header.update(target=as_target(parse_target(plan.target) if plan.target else None, plan.classes).to_json())
    header.update(methods=plan.methods, method_titles={m.name: m.title for m in methods}, labels=plan.labels,
                  columns=plan.columns, map_size=plan.map_size, map_dtype=plan.map_dtype, results=results.RESULTS_FILE)
    write_summary(out, header)
    write_report(out, header, plan.report, root=plan.root, alpha=plan.alpha, colormap=plan.colormap,
                 extra=job.report_extra)
    errors = sum(1 for r in results.read(out) if r.get("error"))
    what = "images" if plan.kind == "image" else "inputs"
    say(job, f"wrote {(job.shown_out or out) / 'report.html'} ({len(paths) - errors} {what}, {errors} unreadable)")
    return 1 if errors else 0


def _inputs(specs) -> tuple[list[str], str]:
    """(the input files, "image" or "media"): images expanded from files, folders, globs and lists, or the
    videos, volumes and signals they name (never both: a model takes one input rank)."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    images, media = split_inputs([os.fspath(s) for s in specs])
    if media and images:
        raise XcamError(f"--images mixes videos/volumes/signals ({_some(media)}) with images ({_some(images)}); "
                        "explain them in separate runs, each with a model for that kind of input")
    if media:
        unique: dict[str, str] = {}
        for p in media:
            unique.setdefault(os.path.normpath(p), p)
        return list(unique.values()), "media"
    return expand_images(images), "image"


def _some(names: list, shown: int = 3) -> str:
    """The first few names, and how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(map(str, names[:shown])) + more


def media_keys(paths) -> list[str]:
    """One output folder name per video / volume / signal: its name before the first dot, then name_2, name_3,
    ... for repeats (clip.mp4 and clip.avi; hidden names and the report's folder get a leading '_')."""
    keys, used = [], set()
    for p in paths:
        stem = Path(p).name.split(".")[0] or "input"
        if stem.startswith(".") or stem in RESERVED_KEYS:
            stem = "_" + stem
        key, n = stem, 1
        while key in used:
            n += 1
            key = f"{stem}_{n}"
        used.add(key)
        keys.append(key)
    return keys


def _engine(job, plan, todo):
    """(batch_no, result lines) for every batch to do, in batch order."""
    threads = 2 if job.picture_threads is None else int(job.picture_threads)
    if job.engine == "ray":
        yield from ray_batches(job.model_spec, plan, todo, address=job.address, workers=job.workers,
                               picture_threads=threads)
        return
    yield from local_batches(job.framework, job.model, plan, todo, decode_workers=job.decode_workers,
                             picture_threads=threads)


def write_summary(out, header: dict) -> None:
    """summary.json: the run's header, every explained image's entry and the errors, streamed from
    results.jsonl (written atomically; memory stays flat)."""
    out = Path(out)
    path = out / "summary.json"
    tmp = out / ".summary.json.part"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(header, indent=2)[:-2] + ',\n  "images": [')
        first = True
        for record in results.read(out):
            if record.get("error"):
                continue
            f.write(("\n" if first else ",\n") + _indent(json.dumps(record, indent=2), "    "))
            first = False
        f.write('\n  ],\n  "errors": [')
        first = True
        for record in results.read(out):
            if record.get("error"):
                f.write(("\n    " if first else ",\n    ") + json.dumps(record["error"]))
                first = False
        f.write("\n  ]\n}\n")
    os.replace(tmp, path)


def _indent(text, pad):
    return "\n".join(pad + line for line in text.splitlines())


def explain_on_ray(spec, images, out, *, address=None, workers=None, log=sys.stderr, **options) -> int:
    """Run ``xcam explain`` on a Ray cluster: ``spec`` (a ``ModelSpec``) says how each actor builds the
    model, ``images`` are files, directories, globs or lists, ``out`` the output directory; ``options`` are
    the other ``Job`` fields (methods, classes, labels, layer, batch_size, resume, map_size, ...).
    Returns the exit code (0, or 1 when some images could not be read)."""
    framework, model = spec.build()
    name = options.pop("model_name", spec.path or getattr(spec.factory, "__name__", "model"))
    job = Job(framework=framework, model=model, model_name=str(name), images=list(images), out=Path(out),
              engine="ray", model_spec=spec, address=address, workers=workers, log=log, **options)
    return run(job)
