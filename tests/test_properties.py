"""Property-based tests (hypothesis): whatever the input, a map is float32, finite, in [0, 1], of the requested
shape (each map min-max normalized: min 0, max 1, or all zero), or the call is refused with a one-line XcamError.

Three levels: the NumPy core (random shapes and dtypes, NaN/inf, constant and zero activations and gradients,
1x1 layers, odd sizes, every method through a NumPy probe); the adapters' ``cam`` with tiny random models
(PyTorch and Keras); ``xcam explain`` with generated image files. The number of generated cases is printed in
the test summary (``CASES``)."""

import collections
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xcam
from xcam import Capture, XcamError
from xcam.pipeline import layer_maps

CASES: collections.Counter = collections.Counter()  # test name -> generated cases (printed by conftest)

FAST = settings(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
METHODS = [m for m in xcam.method_names() if not xcam.get_method(m).needs_attention]  # legrad: transformers only
DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64]


def check_maps(maps, shape):
    """Every map: float32, the requested shape, finite, min 0 and max 1 (or all zero)."""
    assert maps.dtype == np.float32 and maps.shape == shape, (maps.dtype, maps.shape, shape)
    assert np.isfinite(maps).all()
    flat = maps.reshape(-1, shape[-2] * shape[-1])
    assert (flat.min(axis=1) == 0).all()
    assert np.isin(flat.max(axis=1), [0.0, 1.0]).all(), flat.max(axis=1)


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("xcam: error:")]


def check_refusal(exc: XcamError):
    text = str(exc)
    assert text and "\n" not in text, text


class NumpyProbe(xcam.contract.ScoresFromOutputs):
    """``xcam.contract.Probe`` for a NumPy model: logits = V mean_hw(x) (inputs) and W mean_hw(A) (layer)."""

    def __init__(self, inputs, v, w):
        self.inputs, self.v, self.w = inputs, v, w

    def predict(self, inputs):
        return inputs.mean(axis=(2, 3)) @ self.v.T

    def predict_from_layer(self, sample, activations):
        return activations.astype(np.float64).mean(axis=(2, 3)) @ self.w.T

    def input_gradients(self, inputs, targets, guided=False, samples=None):
        v = np.maximum(self.v, 0) if guided else self.v
        hw = inputs.shape[2] * inputs.shape[3]
        rows = np.arange(len(inputs)) if samples is None else np.asarray(samples)  # row b is input samples[b]
        classes = xcam.targets.as_target(targets).class_indices(int(rows.max()) + 1)[rows]
        return np.broadcast_to((v[classes] / hw)[:, :, None, None], inputs.shape).astype(np.float32)

    def bias_gradients(self, inputs, targets, samples=None):
        """The model has no convolution bias nor batch normalization: FullGrad is its input-gradient term only."""
        return self.input_gradients(inputs, targets, samples=samples), []

    def layer_gradients(self, inputs, target, samples=None):
        """The layer ignores the inputs (its output is the capture's A): A and dy/dA = W_k / hw for each row."""
        rows = np.arange(len(inputs)) if samples is None else np.asarray(samples)
        acts = self.layer_acts[rows].astype(np.float32)
        classes = xcam.targets.as_target(target).class_indices(int(rows.max()) + 1)[rows]
        hw = acts.shape[2] * acts.shape[3]
        return acts, np.broadcast_to((self.w[classes] / hw)[:, :, None, None], acts.shape).astype(np.float32)


def _values(rng, shape, dtype, kind, scale):
    if kind == "zero":
        return np.zeros(shape, dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if kind == "huge":
            return rng.integers(info.min // 2, info.max // 2, shape, dtype=np.int64).astype(dtype)
        if kind == "constant":
            return np.full(shape, rng.integers(-5, 6), dtype)
        return rng.integers(-5, 6, shape).astype(dtype)
    if kind == "huge":
        big = float(np.finfo(dtype).max) / 4 if dtype != np.float64 else 1e300
        return (rng.choice([-1.0, 1.0], shape) * big).astype(dtype)
    if kind == "constant":
        return np.full(shape, rng.standard_normal() * scale, dtype)
    return (rng.standard_normal(shape) * scale).astype(dtype)


@st.composite
def core_cases(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    k_model, k = 3, draw(st.sampled_from([0, 1, 2]))  # k = 0: one target per sample; else k classes each
    dtype = draw(st.sampled_from(DTYPES))
    kinds = ["random", "constant", "zero", "huge"] + (["nonfinite"] if not np.issubdtype(dtype, np.integer) else [])
    acts_kind, grads_kind = draw(st.sampled_from(kinds)), draw(st.sampled_from(kinds))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    seed = draw(st.integers(0, 2**32 - 1))
    size = draw(st.none() | st.tuples(st.integers(1, 9), st.integers(1, 9)))
    method = draw(st.sampled_from(METHODS))
    in_hw = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    return dict(n=n, c=c, h=h, w=w, k_model=k_model, k=k, dtype=dtype, acts_kind=acts_kind, grads_kind=grads_kind,
                scale=scale, seed=seed, size=size, method=method, in_hw=in_hw)


def _build(case):
    rng = np.random.default_rng(case["seed"])
    n, c, h, w, k = case["n"], case["c"], case["h"], case["w"], case["k"]
    acts = _values(rng, (n, c, h, w), case["dtype"], case["acts_kind"].replace("nonfinite", "random"),
                   case["scale"])
    gshape = (n, k, c, h, w) if k else (n, c, h, w)
    grads = _values(rng, gshape, case["dtype"], case["grads_kind"].replace("nonfinite", "random"), case["scale"])
    for arr, kind in ((acts, case["acts_kind"]), (grads, case["grads_kind"])):
        if kind == "nonfinite":
            arr.flat[rng.integers(arr.size)] = rng.choice([np.nan, np.inf, -np.inf])
    targets = rng.integers(0, case["k_model"], (n, k) if k else n).astype(np.int64)
    scores = rng.standard_normal((n, case["k_model"])).astype(np.float32)
    head = rng.standard_normal((case["k_model"], c)).astype(np.float32)
    inputs = rng.standard_normal((n, 2, *case["in_hw"])).astype(np.float32)
    probe = NumpyProbe(inputs, rng.standard_normal((case["k_model"], 2)), head.astype(np.float64))
    probe.layer_shape, probe.layer_acts = acts.shape, acts
    hvp = np.zeros(gshape, np.float32)            # the head is linear in A: its Hessian w.r.t. A vanishes
    cap = Capture(activations=acts, gradients=grads, scores=scores, targets=targets, layer="L", head_weights=head,
                  hvp=hvp)
    return cap, probe


@settings(FAST, max_examples=400)
@given(core_cases())
def test_core_maps_are_valid_or_refused(case):
    CASES["core"] += 1
    cap, probe = _build(case)
    m = xcam.get_method(case["method"])
    must_refuse = "nonfinite" in (case["acts_kind"], case["grads_kind"] if m.needs_gradients else "") or \
        (case["dtype"] == np.float64 and case["acts_kind"] == "huge") or \
        (case["dtype"] == np.float64 and case["grads_kind"] == "huge" and m.needs_gradients)
    may_refuse = must_refuse or "huge" in (case["acts_kind"], case["grads_kind"])
    try:
        maps = xcam.compute_cam(cap, m, size=case["size"], model_inputs=probe.inputs, probe=probe)
    except XcamError as exc:
        check_refusal(exc)
        assert may_refuse, f"refused a valid case: {exc}"
        return
    assert not must_refuse, "a capture with NaN/inf (in float32) gave maps"
    own = case["in_hw"] if m.kind == "pixel" else (case["h"], case["w"])
    lead = (case["n"], case["k"]) if case["k"] else (case["n"],)
    check_maps(maps, (*lead, *(case["size"] or own)))


@settings(FAST, max_examples=100)
@given(st.integers(1, 3), st.lists(st.tuples(st.integers(1, 4), st.integers(1, 7), st.integers(1, 7)), min_size=1,
                                   max_size=3),
       st.sampled_from(["gradcam", "layercam", "hirescam", "eigencam"]), st.sampled_from(["random", "zero"]),
       st.tuples(st.integers(1, 9), st.integers(1, 9)), st.integers(0, 2**32 - 1))
def test_core_fused_layers_are_valid(n, layers, method, kind, size, seed):
    CASES["core-fused"] += 1
    rng = np.random.default_rng(seed)
    caps = []
    for c, h, w in layers:
        acts = _values(rng, (n, c, h, w), np.float32, kind, 1.0)
        caps.append(Capture(activations=acts, gradients=rng.standard_normal(acts.shape).astype(np.float32),
                            scores=np.zeros((n, 2), np.float32), targets=np.zeros(n, np.int64), layer="L"))
    check_maps(layer_maps(caps, method, size), (n, *size))


# ------------------------------------------------------------------------------------ adapters, tiny models


@st.composite
def model_cases(draw):
    return dict(
        c_in=draw(st.integers(1, 3)), width=draw(st.integers(1, 4)), kernel=draw(st.sampled_from([1, 3])),
        act=draw(st.sampled_from(["relu", "tanh", "none"])), classes=draw(st.integers(1, 3)),
        n=draw(st.integers(1, 3)), hw=(draw(st.integers(1, 7)), draw(st.integers(1, 7))),
        inputs=draw(st.sampled_from(["random", "random", "zero", "constant", "large", "nan"])),
        method=draw(st.sampled_from(METHODS)),
        targets=draw(st.sampled_from(["none", "int", "list", "bad", "classes"])),
        size=draw(st.none() | st.tuples(st.integers(1, 9), st.integers(1, 9))),
        seed=draw(st.integers(0, 2**16)))


def _inputs_and_targets(case, rng):
    n, c, (h, w) = case["n"], case["c_in"], case["hw"]
    x = {"random": rng.standard_normal((n, c, h, w)), "zero": np.zeros((n, c, h, w)),
         "constant": np.full((n, c, h, w), 0.7), "large": rng.standard_normal((n, c, h, w)) * 1e4,
         "nan": np.full((n, c, h, w), np.nan)}[case["inputs"]].astype(np.float32)
    k = case["classes"]
    targets, classes = {"none": (None, None), "int": (k - 1, None), "list": (list(rng.integers(0, k, n)), None),
                        "bad": (k, None), "classes": (None, list(range(k)))}[case["targets"]]
    return x, targets, classes


def _run_adapter(case, module, model, x, layer, targets, classes):
    must_refuse = case["inputs"] == "nan" or case["targets"] == "bad" or \
        (case["method"] in ("guidedbackprop", "guidedgradcam") and case["act"] != "relu") or \
        (case["method"] == "finercam" and case["classes"] == 1)
    try:
        maps = module.cam(model, x, layer, case["method"], targets, classes=classes, size=case["size"])
    except XcamError as exc:
        CASES["adapters:refused"] += 1
        check_refusal(exc)
        # any other refusal must be one of these (a constant logit row can look like probabilities for K=1
        # is impossible: the check needs K > 1; a constant input gives constant logits, which are not refused)
        assert must_refuse, f"refused a valid case {case}: {exc}"
        return
    assert not must_refuse, f"{case} gave maps"
    lead = (case["n"], case["classes"]) if case["targets"] == "classes" else (case["n"],)
    check_maps(maps, (*lead, *(case["size"] or case["hw"])))


@pytest.mark.torch
@settings(FAST, max_examples=60)
@given(model_cases())
def test_torch_adapter_on_tiny_random_models(case):
    torch = pytest.importorskip("torch")
    from torch import nn

    import xcam_torch

    CASES["torch"] += 1
    torch.manual_seed(case["seed"])
    act = {"relu": nn.ReLU(), "tanh": nn.Tanh(), "none": nn.Identity()}[case["act"]]
    model = nn.Sequential(nn.Conv2d(case["c_in"], case["width"], case["kernel"], padding=case["kernel"] // 2), act,
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(case["width"], case["classes"])).eval()
    x, targets, classes = _inputs_and_targets(case, np.random.default_rng(case["seed"]))
    _run_adapter(case, xcam_torch, model, torch.from_numpy(x), "1", targets, classes)
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.tf
@settings(FAST, max_examples=20)
@given(model_cases())
def test_keras_adapter_on_tiny_random_models(case):
    pytest.importorskip("tensorflow")
    import keras

    import xcam_tf

    CASES["keras"] += 1
    keras.utils.set_random_seed(case["seed"])
    inp = keras.Input((*case["hw"], case["c_in"]))
    act = None if case["act"] == "none" else case["act"]
    h = keras.layers.Conv2D(case["width"], case["kernel"], padding="same", activation=act, name="conv")(inp)
    model = keras.Model(inp, keras.layers.Dense(case["classes"])(keras.layers.GlobalAveragePooling2D()(h)))
    x, targets, classes = _inputs_and_targets(case, np.random.default_rng(case["seed"]))
    _run_adapter(case, xcam_tf, model, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), "conv", targets, classes)
    assert all("call" not in vars(layer) for layer in model.layers)


# ----------------------------------------------------------------------------------- xcam explain, image files


@pytest.fixture(scope="module")
def explain_setup(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from imagefiles import make_files
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2)).eval()
    folder = tmp_path_factory.mktemp("explain")
    torch.save(model, folder / "tiny.pt")
    return folder / "tiny.pt", make_files(folder / "images")


@pytest.mark.torch
@settings(FAST, max_examples=40)
@given(data=st.data())
def test_explain_on_generated_image_files(explain_setup, data):
    from xcam.app.cli import main
    from xcam.app.inputs.images import load_image

    model, pool = explain_setup
    names = data.draw(st.lists(st.sampled_from(sorted(set(pool) - {"a_directory.png"})), min_size=1, max_size=4,
                               unique=True))
    methods = data.draw(st.lists(st.sampled_from(["gradcam", "layercam", "eigencam", "scorecam", "saliency"]),
                                 min_size=1, max_size=2, unique=True))
    classes = data.draw(st.sampled_from([["top1"], ["all"], ["1"], ["2"], ["-1"]]))
    batch = data.draw(st.integers(1, 3))
    readable = [n for n in names if pool[n][1] is not None]
    CASES["explain"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["explain", "--model", str(model), "--trust-model", "--images",
                         *[str(pool[n][0]) for n in names], "--methods", *methods, "--classes", *classes,
                         "--input-size", "8", "--batch-size", str(batch), "--out", str(out)])
        err = err.getvalue()
        CASES[f"explain:exit {code}"] += 1
        assert "Traceback" not in err
        if not readable or classes in (["2"], ["-1"]):
            assert code == 2, err
            lines = [ln for ln in err.splitlines() if ln.startswith("xcam: error:") and "cannot read image" not in ln]
            assert len(lines) == 1 or not readable, err
            assert not out.exists()
            return
        assert code == (0 if len(readable) == len(names) else 1), err
        for n in set(names) - set(readable):
            assert str(pool[n][0]) in err
        summary = json.loads((out / "summary.json").read_text())
        assert [e["image"] for e in summary["images"]] == [str(pool[n][0]) for n in readable]
        for entry in summary["images"]:
            assert sum(entry["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
            for per_class in entry["maps"].values():
                for files in per_class.values():
                    check_maps(np.load(out / files["map"])[None], (1, 8, 8))
        first = load_image(pool[readable[0]][0])
        assert first.ndim == 3


@pytest.mark.torch
def test_explain_on_a_directory(explain_setup, tmp_path, capsys):
    from xcam.app.cli import main

    model, pool = explain_setup
    empty = pool["a_directory.png"][0]
    code = main(["explain", "--model", str(model), "--trust-model", "--images", str(empty), "--input-size", "8",
                 "--out", str(tmp_path / "o")])
    assert code == 2 and error_lines(capsys.readouterr().err) == [
        f"xcam: error: no image files in directory {str(empty)!r} (extensions: .bmp, .exr, .hdr, .jp2, .jpeg, .jpg, "
        ".pbm, .pgm, .pic, .png, .pnm, .ppm, .ras, .sr, .tif, .tiff, .webp)"]
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("plain.png", "rotated_exif.jpg", "deep16.png"):
        (folder / name).write_bytes(pool[name][0].read_bytes())
    code = main(["explain", "--model", str(model), "--trust-model", "--images", str(folder), "--input-size", "8",
                 "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert [Path(e["image"]).name for e in summary["images"]] == ["deep16.png", "plain.png", "rotated_exif.jpg"]


@pytest.mark.torch
@pytest.mark.slow
def test_explain_on_a_10000_by_10000_image(explain_setup, tmp_path, capsys):
    from imagefiles import check_read, make_files

    from xcam.app.cli import main
    from xcam.app.inputs.images import load_image

    files = make_files(tmp_path / "big", huge=True)
    path, expected = files["huge.png"]
    check_read("huge.png", expected, load_image(path))
    code = main(["explain", "--model", str(explain_setup[0]), "--trust-model", "--images", str(path),
                 "--methods", "gradcam", "--input-size", "8", "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    heat = np.load(next((tmp_path / "o").rglob("gradcam_*.npy")))
    check_maps(heat[None], (1, 8, 8))
