"""``xcam explain`` on a video and on volumes (.npy; NIfTI when nibabel is installed): the maps it writes equal
``xcam_torch.cam`` on the same preprocessed input, with a strip, an overlay MP4 or a montage, and a report."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from xcam import XcamError
from xcam.app.cli import main
from xcam.app.jobs.clips import IMAGENET, kind_of, model_input, read_video, read_volume
from xcam.app.outputs.files import write_video

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
    assert summary["images"][0]["kind"] == "video" and summary["images"][0]["shape"] == [3, 8, 32, 32]
    data = read_video(tmp_path / "clip.mp4", 8, (32, 32))
    x = model_input("video", data, 3, IMAGENET)[None]
    layer = summary["images"][0]["layer"]
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
    assert summary["images"][0]["layer"] == "conv2"
    x = np.moveaxis(model_input("volume", vol, 1, None)[None], 1, -1)
    np.testing.assert_allclose(np.load(tmp_path / "o" / "scan" / "gradcam.npy"),
                               xcam_tf.cam(model, x, "conv2", "gradcam")[0], atol=1e-6)


def test_explain_nifti_volumes_end_to_end(tmp_path, capsys):
    """A 3-D .nii whose affine flips x (LAS) and a 4-D .nii.gz with two channels whose affine swaps x and y: both
    are turned to RAS+ by their affine, read axial slices first, and explained through ``xcam explain``; the
    maps equal ``xcam_torch.cam`` on the same arrays built here by hand. A 3-channel volume for this 2-channel
    model is a one-line error naming the file, the others are still explained."""
    nibabel = pytest.importorskip("nibabel")
    rng = np.random.default_rng(3)
    flat = rng.normal(size=(7, 6, 5)).astype(np.float32)                 # voxels (i, j, k)
    nibabel.save(nibabel.Nifti1Image(flat, np.diag([-2.0, 2.0, 3.0, 1.0])), str(tmp_path / "flipped.nii"))
    four = rng.normal(size=(6, 7, 5, 2)).astype(np.float32)              # (i, j, k, channel)
    swap = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)   # i is world y, j world x
    nibabel.save(nibabel.Nifti1Image(four, swap), str(tmp_path / "twochannel.nii.gz"))
    nibabel.save(nibabel.Nifti1Image(rng.normal(size=(6, 7, 5, 3)).astype(np.float32), np.eye(4)),
                 str(tmp_path / "three.nii.gz"))
    # by hand: RAS+ (x, y, z) then (z, y, x); channels first
    ras3 = flat[::-1]                                                     # x was flipped
    ras4 = four.transpose(1, 0, 2, 3)                                     # voxel axes swapped back
    np.testing.assert_array_equal(read_volume(tmp_path / "flipped.nii"), ras3.transpose(2, 1, 0))
    np.testing.assert_array_equal(read_volume(tmp_path / "twochannel.nii.gz"), ras4.transpose(3, 2, 1, 0))
    torch.save(net3d(2), tmp_path / "net.pth")
    code = main(["explain", "--model", str(tmp_path / "net.pth"), "--trust-model", "--images",
                 str(tmp_path / "flipped.nii"), str(tmp_path / "twochannel.nii.gz"), str(tmp_path / "three.nii.gz"),
                 "--methods", "gradcam", "layercam", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1
    assert "three.nii.gz: the volume has 3 channels but the model takes 2" in err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert [e["shape"] for e in summary["images"]] == [[2, 5, 6, 7], [2, 5, 6, 7]]
    for stem, vol in (("flipped", ras3.transpose(2, 1, 0)), ("twochannel", ras4.transpose(3, 2, 1, 0))):
        v = vol if vol.ndim == 4 else np.repeat(vol[None], 2, axis=0)
        x = ((v - v.mean()) / v.std())[None].astype(np.float32)          # standardized over the whole volume
        for method in ("gradcam", "layercam"):
            written = np.load(tmp_path / "o" / stem / f"{method}.npy")
            expected = xcam_torch.cam(net3d(2), x, "3", method)[0]
            assert written.shape == (5, 6, 7) and np.ptp(expected) > 0.5
            np.testing.assert_allclose(written, expected, atol=1e-5)
        assert (tmp_path / "o" / stem / "gradcam_montage.png").stat().st_size > 0
    assert (tmp_path / "o" / "report.html").read_text().count("data:image/png") == 4


def test_results_jsonl_lines_like_the_image_job(tmp_path, capsys):
    """A line per input in results.jsonl with the image job's keys and values (predicted label and index, the
    softmax probabilities, the target's score, each method's files), an error line for an unreadable input, and
    summary.json built from them; two inputs with the same name get distinct folders."""
    rng = np.random.default_rng(4)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    vols = [rng.normal(size=(6, 10, 12)).astype(np.float32), rng.normal(size=(6, 10, 12)).astype(np.float32)]
    np.save(tmp_path / "a" / "scan.npy", vols[0])
    np.save(tmp_path / "b" / "scan.npy", vols[1])
    (tmp_path / "broken.npy").write_bytes(b"nope")
    torch.save(net3d(1), tmp_path / "net.pth")
    paths = [str(tmp_path / "a" / "scan.npy"), str(tmp_path / "broken.npy"), str(tmp_path / "b" / "scan.npy")]
    code = main(["explain", "--model", str(tmp_path / "net.pth"), "--trust-model", "--images", *paths,
                 "--methods", "gradcam", "scorecam", "--labels", "left,right", "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 1
    out = tmp_path / "o"
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2] and [line["image"] for line in lines] == paths
    assert set(lines[1]) == {"index", "image", "error"} and "cannot read volume" in lines[1]["error"]
    image_job_keys = {"index", "key", "image", "predicted", "predicted_index", "probabilities", "target_score",
                      "channels", "maps"}
    model = net3d(1)
    for line, vol in zip((lines[0], lines[2]), vols):
        assert image_job_keys <= set(line) and line["kind"] == "volume" and line["layer"] == "3"
        x = model_input("volume", vol, 1, None)[None]
        logits = model(torch.from_numpy(x)).detach().numpy()[0]
        top = int(logits.argmax())
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert line["predicted_index"] == top and line["predicted"] == ["left", "right"][top]
        np.testing.assert_allclose(list(line["probabilities"].values()), probs, atol=1e-6)
        assert list(line["probabilities"]) == ["left", "right"] and line["channels"] == 4
        np.testing.assert_allclose(line["target_score"], logits[top], atol=1e-5)
        for method in ("gradcam", "scorecam"):
            record = line["maps"][method]["top-1"]
            assert record["class"] == ["left", "right"][top]
            np.testing.assert_allclose(np.load(out / record["map"]), xcam_torch.cam(model, x, "3", method)[0],
                                       atol=1e-5)
            assert (out / record["picture"]).is_file()
    assert [lines[0]["key"], lines[2]["key"]] == ["scan", "scan_2"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == [lines[0], lines[2]] and summary["errors"] == [lines[1]["error"]]
    assert summary["columns"] == ["top-1"] and summary["results"] == "results.jsonl"
    assert "Not explained" in (out / "report.html").read_text()


def test_a_mix_of_images_and_clips_is_routed_or_refused_in_one_line(tmp_path, capsys):
    """Videos and volumes named in a folder or a glob go to the clip reader (never "unreadable"); a mix with
    images is a one-line error naming both sides, before any output."""
    import cv2

    vols = tmp_path / "vols"
    vols.mkdir()
    rng = np.random.default_rng(5)
    for name in ("one", "two"):
        np.save(vols / f"{name}.npy", rng.normal(size=(6, 8, 8)).astype(np.float32))
    (vols / ".hidden.npy").write_bytes(b"skipped")
    torch.save(net3d(1), tmp_path / "net.pth")
    base = ["explain", "--model", str(tmp_path / "net.pth"), "--trust-model", "--methods", "gradcam", "--quiet"]
    for spec, out in ((str(vols), "o1"), (str(vols / "*.npy"), "o2")):
        assert main([*base, "--images", spec, "--out", str(tmp_path / out)]) == 0, capsys.readouterr().err
        lines = [json.loads(x) for x in (tmp_path / out / "results.jsonl").read_text().splitlines()]
        assert [Path(line["image"]).name for line in lines] == ["one.npy", "two.npy"]
        assert not any("error" in line for line in lines)
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((8, 8, 3), np.uint8))
    code = main([*base, "--images", str(tmp_path / "photo.png"), str(vols), "--out", str(tmp_path / "o3")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--images mixes videos/volumes/signals (" in err and "one.npy" in err and "photo.png" in err
    assert "separate runs" in err and not (tmp_path / "o3").exists()
    code = main([*base, "--images", str(vols), "--classes", "0", "1", "--out", str(tmp_path / "o4")])
    assert code == 2 and "--classes is for images" in capsys.readouterr().err
    # a folder of photos with a stray .npy stays an image run, as before
    cv2.imwrite(str(vols / "photo.png"), np.zeros((8, 8, 3), np.uint8))
    from xcam.app.jobs.clips import split_inputs
    assert split_inputs([str(vols), str(vols / "*")]) == ([str(vols), str(vols / "*")], [])
    assert split_inputs([str(tmp_path / "photo.png"), "missing.mp4", "list.txt"]) == \
        ([str(tmp_path / "photo.png"), "list.txt"], ["missing.mp4"])
