"""Inputs beyond the happy path (issue #12): each gets a right answer or a one-line XcamError. Every test here
failed before its fix unless its docstring says it guards a fix made earlier."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xcam
from xcam import Capture, XcamError
from xcam.app.cli import main

ROOT = Path(__file__).parent.parent


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and text, text
    return text


def error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------ NaN and inf in captures


def _capture(acts, grads):
    n = acts.shape[0]
    return Capture(activations=acts, gradients=grads, scores=np.zeros((n, 2), np.float32),
                   targets=np.zeros(n, np.int64), layer="conv")


@pytest.mark.parametrize("where, value, word", [("activations", np.nan, "NaN"), ("gradients", np.inf, "infinite"),
                                                ("gradients", np.nan, "NaN")])
def test_nan_or_inf_in_a_capture_is_an_error_not_a_nan_map(where, value, word):
    acts = np.ones((1, 2, 3, 3), np.float32)
    grads = np.ones((1, 2, 3, 3), np.float32)
    {"activations": acts, "gradients": grads}[where][0, 1, 2, 0] = value
    for method in ("gradcam", "layercam") + (("eigencam",) if where == "activations" else ()):
        with pytest.raises(XcamError, match=rf"the {where} of layer 'conv' hold {word} values") as err:
            xcam.compute_cam(_capture(acts, grads), method, (6, 6))
        one_line(err)
    if where == "gradients":  # a gradient-free method does not look at the gradients
        assert np.isfinite(xcam.compute_cam(_capture(acts, grads), "eigencam", (6, 6))).all()


def test_float64_values_beyond_float32_are_refused():
    acts = np.full((1, 1, 2, 2), 1e300)
    with pytest.raises(XcamError, match="activations of layer 'conv' hold infinite values"):
        xcam.compute_cam(_capture(acts, np.ones_like(acts)), "gradcam")


def test_a_map_that_overflows_float32_is_refused_and_a_wide_range_is_normalized():
    acts = np.full((1, 2, 2, 2), 3e38, np.float32)
    with pytest.raises(XcamError, match="the gradcam map of layer 'conv' overflows float32"):
        xcam.compute_cam(_capture(acts, np.ones_like(acts)), "gradcam")
    # max - min overflows float32 although every value is finite: scaled in float64
    np.testing.assert_array_equal(xcam.normalize_minmax(np.array([[-3e38, 0, 3e38]], np.float32)), [[0, 0.5, 1]])


@pytest.mark.torch
def test_torch_inf_gradient_at_the_layer_is_named():
    """sqrt after a ReLU: d sqrt(a)/da is inf where a = 0, while the logits stay finite."""
    import torch
    from torch import nn

    import xcam_torch

    class Sqrt(nn.Module):
        def forward(self, x):
            return x.sqrt()

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), Sqrt(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(2, 2)).eval()
    x = torch.randn(2, 3, 6, 6)
    with pytest.raises(XcamError, match=r"the gradients of layer '1' hold (NaN|infinite) values") as err:
        xcam_torch.cam(model, x, "1", "gradcam", 0)
    one_line(err)


@pytest.mark.tf
def test_keras_inf_gradient_at_the_layer_is_named():
    import keras

    import xcam_tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv")(inp)
    s = keras.layers.Lambda(lambda t: keras.ops.sqrt(t), name="sqrt")(a)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(s)))
    x = np.random.RandomState(0).randn(2, 6, 6, 3).astype(np.float32)
    with pytest.raises(XcamError, match=r"the gradients of layer 'conv' hold (NaN|infinite) values") as err:
        xcam_tf.cam(model, x, "conv", "gradcam", 0)
    one_line(err)


# ------------------------------------------------------------------ empty batch, targets=-1 (fixed on main before)


def test_empty_batch_names_the_reason(fw):
    """Guards the fix on main: N = 0 is refused as an empty batch, not as 'outputs are probabilities'."""
    empty = fw.inputs[:0]
    with pytest.raises(XcamError, match=r"the batch is empty \(shape \(0, ") as err:
        fw.module.cam(fw.model, empty, fw.conv2)
    one_line(err)


@pytest.mark.parametrize("targets", [-1, [0, -1]])
def test_negative_target_is_refused_not_top1(fw, targets):
    """Guards the fix on main: -1 is refused (as in the CLI), never read as 'each sample's top-1'."""
    with pytest.raises(XcamError, match=r"class index -1 is out of range: the model has 2 classes, valid indices "
                                        r"are 0\.\.1") as err:
        fw.cam(fw.conv2, "gradcam", targets)
    one_line(err)
    with pytest.raises(XcamError, match="class index -1 is out of range"):
        fw.cam(fw.conv2, "gradcam", classes=[-1])


@pytest.fixture(scope="module")
def tiny_torch_file(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2)).eval()
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    torch.save(model, path)
    image = tmp_path_factory.mktemp("img") / "ramp.png"
    import cv2

    cv2.imwrite(str(image), np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3))
    return path, image


@pytest.mark.torch
def test_cli_negative_class_is_refused_like_the_api(capsys, tmp_path, tiny_torch_file):
    """Guards the fix on main."""
    model, image = tiny_torch_file
    code = main(["explain", "--model", str(model), "--trust-model", "--images", str(image), "--classes", "-1",
                 "--input-size", "8", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert error_line(err) == ("xcam: error: class index -1 is out of range: the model has 2 classes, valid "
                               "indices are 0..1 (0=0, 1=1)")


# ----------------------------------------------------------------------------------------------- Keras inputs


@pytest.mark.tf
@pytest.mark.torch
def test_keras_channels_first_batch_is_named_before_tracing():
    from kits import make_kit

    from xcam_tf._capture import _STEPS

    fw = make_kit("tf")

    before = len(_STEPS)
    for method in ("gradcam", "scorecam", "saliency"):
        with pytest.raises(XcamError) as err:
            fw.module.cam(fw.model, fw.x_nchw, fw.conv2, method)
        assert one_line(err) == ("the model takes inputs (N, 8, 8, 3), channels last (N, H, W, C), got shape "
                                 "(2, 3, 8, 8): this batch looks channels first (N, C, H, W); give "
                                 "np.moveaxis(inputs, 1, -1)")
    assert len(_STEPS) == before  # refused before any compiled step was built
    with pytest.raises(XcamError, match=r"the model takes inputs \(N, 8, 8, 3\).*got shape \(2, 9, 9, 3\)$"):
        fw.module.cam(fw.model, np.zeros((2, 9, 9, 3), np.float32), fw.conv2)


@pytest.mark.parametrize("method", ["guidedbackprop", "guidedgradcam"])
def test_guided_backprop_without_relu_is_an_xcam_error(fw, method):
    if fw.name == "torch":
        from torch import nn

        model = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(2, 2)).eval()
        inputs, layer = fw.x_nchw, "0"
    else:
        import keras

        inp = keras.Input((8, 8, 3))
        h = keras.layers.Conv2D(2, 3, padding="same", activation="tanh", name="conv")(inp)
        model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(h)))
        inputs, layer = fw.inputs, "conv"
    with pytest.raises(XcamError, match="guided backprop needs (nn.)?ReLU") as err:
        fw.module.cam(model, inputs, layer, method, 0)
    one_line(err)


# ------------------------------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize("option, value", [("--batch-size", "0"), ("--input-size", "0"), ("--batch-size", "-2"),
                                           ("--input-size", "x"), ("--num-classes", "0")])
def test_cli_sizes_must_be_positive_integers(capsys, tmp_path, option, value):
    code = main(["explain", "--model", "m.pt", "--images", "a.png", "--out", str(tmp_path / "o"), option, value])
    err = capsys.readouterr().err
    assert code == 2
    valid = "a side (224) or HxW (224x308)" if option == "--input-size" else "a positive integer (1, 2, ...)"
    assert error_line(err) == (f"xcam explain: error: argument {option}: must be {valid}, "
                               f"got {value!r} (see xcam explain --help)")
    assert not (tmp_path / "o").exists()


def test_cli_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"xcam {xcam.__version__}"
    run = subprocess.run([sys.executable, "-m", "xcam", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0 and run.stdout.strip() == f"xcam {xcam.__version__}"


@pytest.mark.tf
def test_keras_runs_print_no_tensorflow_start_up_lines(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, name="c"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    model.save(tmp_path / "m.keras")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "XCAM_"))}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([sys.executable, "-m", "xcam", "layers", "--model", str(tmp_path / "m.keras")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "" and "c  " in run.stdout


# ------------------------------------------------------------------------------------------- file modes


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_outputs_follow_the_umask(tmp_path, mask):
    from xcam.app.outputs import files

    old = os.umask(mask)
    try:
        with files.staged_dir(tmp_path / "out") as stage:
            files.write_json(stage / "summary.json", {"a": 1})
            (stage / "sub").mkdir()
            files.write_png(stage / "sub" / "p.png", np.zeros((2, 2, 3), np.uint8))
        files.write_text(tmp_path / "alone.txt", "x")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "out") == 0o777 & ~mask
    assert mode(tmp_path / "out" / "sub") == 0o777 & ~mask
    for f in ("out/summary.json", "out/sub/p.png", "alone.txt"):
        assert mode(tmp_path / f) == 0o666 & ~mask, f
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == {"a": 1}


@pytest.mark.torch
def test_explain_outputs_follow_the_umask(tmp_path, tiny_torch_file):
    model, image = tiny_torch_file
    old = os.umask(0o027)
    try:
        code = main(["explain", "--model", str(model), "--trust-model", "--images", str(image), "--input-size", "8",
                     "--methods", "gradcam", "--out", str(tmp_path / "o"), "--quiet"])
    finally:
        os.umask(old)
    assert code == 0
    paths = [tmp_path / "o", *(tmp_path / "o").rglob("*")]
    assert len(paths) > 5
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == (0o750 if p.is_dir() else 0o640), p
