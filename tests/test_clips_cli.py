"""``xcam explain`` on a video and on volumes (.npy; NIfTI when nibabel is installed): the maps it writes equal
``xcam_torch.cam`` on the same preprocessed input, with a strip, an overlay MP4 or a montage, and a report."""

import json
import sys

import numpy as np
import pytest

from xcam import XcamError
from xcam.app.cli import main
from xcam.app.clips import IMAGENET, kind_of, model_input, read_video, read_volume
from xcam.app.files import write_video

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import xcam_torch  # noqa: E402


def net3d(channels):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(channels, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 4, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    return model


def test_kinds_by_name():
    assert [kind_of(p) for p in ["a.mp4", "b.AVI", "c.nii.gz", "d.nii", "e.npy", "f.jpg"]] == \
        ["video", "video", "volume", "volume", "volume", None]


def test_explain_a_video(tmp_path, capsys):
    frames = np.zeros((20, 40, 40, 3), np.uint8)
    for t in range(20):
        frames[t, 10:20, 2 * t:2 * t + 8] = 255                     # a square moving right
    try:
        write_video(tmp_path / "clip.mp4", frames, fps=10)
    except XcamError as exc:
        pytest.skip(str(exc))
    torch.save(net3d(3), tmp_path / "net.pth")
    code = main(["explain", "--model", str(tmp_path / "net.pth"), "--trust-model", "--images",
                 str(tmp_path / "clip.mp4"), "--frames", "8", "--input-size", "32", "--methods", "gradcam",
                 "layercam", "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "o"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"][0]["kind"] == "video" and summary["inputs"][0]["shape"] == [3, 8, 32, 32]
    data = read_video(tmp_path / "clip.mp4", 8, (32, 32))
    x = model_input("video", data, 3, IMAGENET)[None]
    layer = summary["inputs"][0]["layer"]
    assert layer == "3"
    for method in ("gradcam", "layercam"):
        written = np.load(out / "clip" / f"{method}.npy")
        assert written.shape == (8, 32, 32)
        np.testing.assert_allclose(written, xcam_torch.cam(net3d(3), x, layer, method)[0], atol=1e-6)
        assert (out / "clip" / f"{method}_strip.png").stat().st_size > 0
        assert (out / "clip" / f"{method}.mp4").stat().st_size > 0
    assert "data:image/png" in (out / "report.html").read_text()


def test_explain_volumes_and_an_unreadable_one(tmp_path, capsys):
    vol = np.random.default_rng(0).normal(size=(6, 10, 12)).astype(np.float32)
    np.save(tmp_path / "scan.npy", vol)
    (tmp_path / "broken.npy").write_bytes(b"not an array")
    torch.save(net3d(1), tmp_path / "net.pth")
    code = main(["explain", "--model", str(tmp_path / "net.pth"), "--trust-model", "--images",
                 str(tmp_path / "scan.npy"), str(tmp_path / "broken.npy"), "--methods", "gradcam",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and "cannot read volume" in err and "broken.npy" in err
    written = np.load(tmp_path / "o" / "scan" / "gradcam.npy")
    x = model_input("volume", read_volume(tmp_path / "scan.npy"), 1, None)[None]
    np.testing.assert_allclose(written, xcam_torch.cam(net3d(1), x, "3", "gradcam")[0], atol=1e-6)
    assert written.shape == (6, 10, 12) and (tmp_path / "o" / "scan" / "gradcam_montage.png").exists()


def test_nifti_needs_the_medical_extra(tmp_path, monkeypatch):
    (tmp_path / "scan.nii").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "nibabel", None)               # as if not installed
    with pytest.raises(XcamError, match=r"pip install 'xcam\[medical\]'"):
        read_volume(tmp_path / "scan.nii")


def test_nifti_is_read_axial_slices_first(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)     # (x, y, z)
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), str(tmp_path / "scan.nii.gz"))
    np.testing.assert_array_equal(read_volume(tmp_path / "scan.nii.gz"), data.transpose(2, 1, 0))


def test_a_video_shorter_than_frames_is_one_line(tmp_path):
    try:
        write_video(tmp_path / "short.mp4", np.zeros((3, 16, 16, 3), np.uint8))
    except XcamError as exc:
        pytest.skip(str(exc))
    with pytest.raises(XcamError, match="has 3 frames; --frames 8 needs at least that many"):
        read_video(tmp_path / "short.mp4", 8, (16, 16))


def test_layers_listing_for_volume_and_signal_models(tmp_path, capsys):
    torch.save(net3d(1), tmp_path / "vol.pth")
    assert main(["layers", "--model", str(tmp_path / "vol.pth"), "--trust-model", "--input-size", "12"]) == 0
    out = capsys.readouterr().out
    assert "input 1x12x12x12" in out and "4x12x12x12" in out and "(default)" in out
    torch.manual_seed(0)
    signal = nn.Sequential(nn.Conv1d(2, 3, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                           nn.Linear(3, 2))
    torch.save(signal, tmp_path / "sig.pth")
    assert main(["layers", "--model", str(tmp_path / "sig.pth"), "--trust-model"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("1 "))
    assert "3x1000" in line and "(default)" in line and "input 2x1000" in out


@pytest.mark.tf
def test_explain_a_volume_with_a_keras_model(tmp_path, capsys):
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    import xcam_tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 10, 12, 1))
    x = keras.layers.Conv3D(4, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv3D(4, 3, padding="same", activation="relu", name="conv2")(x)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling3D()(x)))
    model.save(tmp_path / "vol.keras")
    vol = np.random.default_rng(1).normal(size=(6, 10, 12)).astype(np.float32)
    np.save(tmp_path / "scan.npy", vol)
    code = main(["explain", "--model", str(tmp_path / "vol.keras"), "--images", str(tmp_path / "scan.npy"),
                 "--methods", "gradcam", "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["inputs"][0]["layer"] == "conv2"
    x = np.moveaxis(model_input("volume", vol, 1, None)[None], 1, -1)
    np.testing.assert_allclose(np.load(tmp_path / "o" / "scan" / "gradcam.npy"),
                               xcam_tf.cam(model, x, "conv2", "gradcam")[0], atol=1e-6)
