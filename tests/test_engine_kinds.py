"""One job engine for every input kind (#22 items 1-2): videos, volumes and signals stream through the same
stream -> batch -> write -> record path as images: batches of --batch-size, results.jsonl, --resume to the
same bytes, the paged report; signals (.npy / .csv traces) run through the CLI for 1-D models; pictures drawn
in the picture threads are the bytes drawn inline."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from xcam import XcamError
from xcam.app.cli import main
from xcam.app.inputs.kinds import model_input
from xcam.app.inputs.signals import read_signal
from xcam.app.jobs.explain import Job, run
from xcam.app.models.frameworks import load_framework
from xcam.app.outputs import files, results

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import xcam_torch  # noqa: E402

pytestmark = pytest.mark.torch


def net3d(channels=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(channels, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2)).eval()


def net1d(channels=2):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(channels, 4, 5, padding=2), nn.ReLU(), nn.Conv1d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


def tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Four 10-frame 24x24 clips (a square moving at different speeds) and a broken one."""
    folder = tmp_path_factory.mktemp("clips")
    for k in range(4):
        frames = np.zeros((10, 24, 24, 3), np.uint8)
        for t in range(10):
            x = (t * (k + 1)) % 16
            frames[t, 6:14, x:x + 8] = (255, 40 * k, 0)
        try:
            files.write_video(folder / f"c{k}.mp4", frames, fps=10)
        except XcamError as exc:
            pytest.skip(str(exc))
    (folder / "c2b.mp4").write_bytes(b"not a video")
    return folder


def clip_job(clips, out, **kw):
    options = dict(methods=["gradcam", "layercam"], input_size=16, batch_size=2, frames=4, log=None)
    options.update(kw)
    return Job(framework=load_framework("torch"), model=net3d(), model_name="net3d", images=[str(clips)], out=out,
               **options)


def test_a_folder_of_clips_resumes_to_byte_identical_files(clips, tmp_path, monkeypatch):
    """Stopped by a failing writer in batch 1 (after one clip's overlay video), then by a torn results line,
    then resumed to the end: the files are those of an uninterrupted run, byte for byte."""
    whole = tmp_path / "whole"
    assert run(clip_job(clips, whole)) == 1  # the broken clip is reported, the others explained
    reference = tree(whole)
    lines = [json.loads(x) for x in reference["results.jsonl"].decode().splitlines()]
    assert [Path(r["image"]).name for r in lines] == ["c0.mp4", "c1.mp4", "c2.mp4", "c2b.mp4", "c3.mp4"]
    assert "cannot read video" in lines[3]["error"] and lines[0]["kind"] == "video"
    assert lines[0]["shape"] == [3, 4, 16, 16] and set(lines[0]["maps"]) == {"gradcam", "layercam"}
    assert {"c0/gradcam.npy", "c0/gradcam_strip.png", "c0/gradcam.mp4", "run.json", "report.html"} <= set(reference)
    assert json.loads(reference["run.json"])["batch_size"] == 2

    out = tmp_path / "cut"
    real_video, calls = files.write_video, []

    def failing_video(path, frames, fps=8.0):
        calls.append(path)
        if Path(path).parent.name == "c2":  # batch 0 holds c0 and c1; fail in batch 1, whatever thread is first
            raise KeyboardInterrupt
        real_video(path, frames, fps)

    monkeypatch.setattr(files, "write_video", failing_video)
    with pytest.raises(KeyboardInterrupt):
        run(clip_job(clips, out))
    monkeypatch.setattr(files, "write_video", real_video)
    done = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(done) == 2 and not (out / "c2").exists() and not (out / "report.html").exists()

    real_commit = results.commit

    def torn(out_dir, batch_no, records):
        if batch_no == 1:
            real_commit(out_dir, batch_no, [])
            with open(Path(out_dir) / "results.jsonl", "ab") as f:
                f.write(json.dumps(records[0])[:15].encode())
            raise KeyboardInterrupt
        real_commit(out_dir, batch_no, records)

    monkeypatch.setattr(results, "commit", torn)
    with pytest.raises(KeyboardInterrupt):
        run(clip_job(clips, out, resume=True))
    monkeypatch.undo()
    assert run(clip_job(clips, out, resume=True)) == 1
    assert tree(out) == reference
    with pytest.raises(XcamError, match="settings differ"):
        run(clip_job(clips, out, resume=True, frames=5))


def test_clip_maps_equal_the_library_and_pictures_are_the_bytes_drawn_inline(clips, tmp_path):
    inline, pooled = tmp_path / "inline", tmp_path / "pooled"
    assert run(clip_job(clips, inline, picture_threads=0, batch_size=3, report="paged")) == 1
    assert run(clip_job(clips, pooled, picture_threads=3, batch_size=3, report="paged")) == 1
    assert tree(inline) == tree(pooled)
    from xcam.app.inputs.clips import read_video
    x = model_input("video", read_video(clips / "c1.mp4", 4, (16, 16)), 3,
                    ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))[None]
    np.testing.assert_allclose(np.load(inline / "c1" / "layercam.npy"), xcam_torch.cam(net3d(), x, "3", "layercam")[0],
                               atol=1e-6)
    page = (inline / "pages" / "page-000001.html").read_text()
    assert "../c1/gradcam_strip.png" in page and "../c3/layercam_strip.png" in page
    assert "page-000001.html" in (inline / "report.html").read_text()


def test_volumes_of_different_shapes_share_a_batch(tmp_path):
    rng = np.random.default_rng(0)
    vols = {"a": rng.normal(size=(6, 8, 8)), "b": rng.normal(size=(5, 7, 9)), "c": rng.normal(size=(6, 8, 8))}
    for name, v in vols.items():
        np.save(tmp_path / f"{name}.npy", v.astype(np.float32))
    model = net3d(1)
    torch.save(model, tmp_path / "net.pth")
    assert main(["explain", "--model", str(tmp_path / "net.pth"), "--trust-model", "--images",
                 *[str(tmp_path / f"{n}.npy") for n in vols], "--methods", "gradcam", "--batch-size", "3",
                 "--map-dtype", "float16", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    for name, v in vols.items():
        x = model_input("volume", v.astype(np.float32), 1, "imagenet")[None]
        written = np.load(tmp_path / "o" / name / "gradcam.npy")
        assert written.dtype == np.float16 and written.shape == v.shape
        np.testing.assert_allclose(written, xcam_torch.cam(model, x, "3", "gradcam")[0], atol=1e-3)
        assert (tmp_path / "o" / name / "gradcam_montage.png").stat().st_size > 0


def test_signals_through_the_cli_npy_and_csv(tmp_path, capsys):
    """.npy (C, L) and .csv (L rows x C columns, with a header row) traces for a Conv1d model: each map equals
    ``xcam_torch.cam`` on the standardized trace; a signal plot per map; --resume on a finished run keeps it;
    a trace with the wrong channel count is a one-line error naming the file."""
    t = np.linspace(0, 1, 64, dtype=np.float32)
    a = np.stack([np.sin(9 * t), np.cos(5 * t) + t])
    b = np.stack([t ** 2, np.sin(20 * t)])
    np.save(tmp_path / "a.npy", a)
    with open(tmp_path / "b.csv", "w") as f:
        f.write("lead1,lead2\n" + "".join(f"{u:.6f},{v:.6f}\n" for u, v in b.T))
    np.save(tmp_path / "three.npy", np.zeros((3, 64), np.float32))
    model = net1d()
    torch.save(model, tmp_path / "sig.pth")
    args = ["explain", "--model", str(tmp_path / "sig.pth"), "--trust-model", "--images", str(tmp_path / "a.npy"),
            str(tmp_path / "b.csv"), str(tmp_path / "three.npy"), "--methods", "gradcam", "layercam",
            "--labels", "n,af,other", "--out", str(tmp_path / "o")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "three.npy: the signal has 3 channels but the model takes 2" in err
    np.testing.assert_allclose(read_signal(tmp_path / "b.csv"), b, atol=1e-6)
    lines = [json.loads(x) for x in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert [r.get("kind") for r in lines] == ["signal", "signal", None]
    for line, trace in zip(lines[:2], (a, b)):
        read = read_signal(tmp_path / Path(line["image"]).name)
        np.testing.assert_allclose(read, trace, atol=1e-6)
        x = model_input("signal", read, 2, "imagenet")[None]
        np.testing.assert_allclose(x[0].mean(), 0, atol=1e-6)
        logits = model(torch.from_numpy(x)).detach().numpy()[0]
        assert line["predicted"] == ["n", "af", "other"][int(logits.argmax())] and line["layer"] == "3"
        for method in ("gradcam", "layercam"):
            written = np.load(tmp_path / "o" / line["key"] / f"{method}.npy")
            assert written.shape == (64,)
            np.testing.assert_allclose(written, xcam_torch.cam(model, x, "3", method)[0], atol=1e-6)
            plot = cv2.imread(str(tmp_path / "o" / line["key"] / f"{method}_plot.png"))
            assert plot.shape == (136, 64, 3)
    before = tree(tmp_path / "o")
    assert main([*args, "--resume", "--quiet"]) == 1 and tree(tmp_path / "o") == before
    assert main([*args, "--normalize", "0.5,0.5", "--overwrite", "--quiet"]) == 2
    assert "signals are standardized" in capsys.readouterr().err


def write_photos(folder: Path, count: int) -> None:
    rng = np.random.RandomState(1)
    folder.mkdir()
    for i in range(count):
        cv2.imwrite(str(folder / f"p{i}.png"), rng.randint(0, 256, (20 + 3 * i, 18 + i, 3)).astype(np.uint8))


def net2d():
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 20, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(20, 2)).eval()


@pytest.mark.parametrize("report", ["single", "paged"])
def test_image_pictures_drawn_beside_the_model_are_the_bytes_drawn_inline(tmp_path, report):
    """Overlays, feature grids (20 channels: two rows) and thumbnails from the picture threads, and the report
    built from them, are byte for byte those drawn in the model's thread."""
    write_photos(tmp_path / "p", 5)
    outs = {}
    for threads in (0, 3):
        outs[threads] = tmp_path / f"o{threads}"
        job = Job(framework=load_framework("torch"), model=net2d(), model_name="net", images=[str(tmp_path / "p")],
                  out=outs[threads], methods=["gradcam", "layercam"], classes=["all"], labels=["a", "b"],
                  input_size=16, batch_size=2, log=None, report=report, picture_threads=threads)
        assert run(job) == 0
    inline = tree(outs[0])
    assert inline == tree(outs[3])
    assert len([n for n in inline if n.endswith(".png")]) == 5 * (1 + 4)
    assert ("p4/thumb.jpg" in inline) == (report == "paged")


@pytest.mark.tf
def test_keras_job_with_a_named_layer_lists_no_layers(tmp_path, monkeypatch):
    """With --layer on Keras the layer listing (an eager forward) is skipped: the first capture checks the name
    (a wrong one is the one-line error with the nearest names, before any output), and the maps are the
    adapter's."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    import xcam_tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    write_photos(tmp_path / "p", 2)
    tf_fw = load_framework("tf")

    def job(out, layer):
        return Job(framework=tf_fw, model=model, model_name="k", images=[str(tmp_path / "p")], out=out,
                   methods=["gradcam"], layer=layer, log=None, features=False, overlays=False, input_size=16)

    monkeypatch.setattr(xcam_tf, "layer_records", lambda *a, **k: pytest.fail("layers listed"))
    with pytest.raises(XcamError, match="unknown layer 'cnv'; nearest: conv"):
        run(job(tmp_path / "bad", "cnv"))
    assert not (tmp_path / "bad").exists()
    assert run(job(tmp_path / "named", "conv")) == 0
    from xcam.app.inputs.images import load_image, preprocess
    x = preprocess([load_image(tmp_path / "p" / f"p{i}.png") for i in range(2)], (16, 16))
    expected = xcam_tf.cam(model, x, "conv", "gradcam")
    lines = [json.loads(r) for r in (tmp_path / "named" / "results.jsonl").read_text().splitlines()]
    for i, line in enumerate(lines):
        record = line["maps"]["gradcam"]["top-1"]
        np.testing.assert_allclose(np.load(tmp_path / "named" / record["map"]), expected[i], atol=1e-6)


def test_pytorch_runs_channels_last_for_the_job_and_is_restored(tmp_path, monkeypatch):
    """auto: a 2-D conv model runs channels-last for the job (its weights NHWC during every capture), the maps
    equal the contiguous run's to 1e-5, and afterwards, also after an interrupted run, every parameter has its
    own storage and strides back; a 3-D model stays contiguous."""
    from xcam.app.models.frameworks import Framework

    write_photos(tmp_path / "p", 3)
    model = net2d()
    before = {n: (p.data_ptr(), p.stride()) for n, p in model.named_parameters()}
    seen = []

    class Recording(Framework):
        def capture(self, model, batch, layer, **kwargs):
            seen.append(model[0].weight.is_contiguous(memory_format=torch.channels_last))
            return super().capture(model, batch, layer, **kwargs)

    fw = load_framework("torch")

    def job(out, fmt, **kw):
        return Job(framework=Recording(fw.name, fw.adapter, fw.models), model=model, model_name="net",
                   images=[str(tmp_path / "p")], out=out, methods=["gradcam"], classes=["all"], input_size=16,
                   batch_size=2, log=None, memory_format=fmt, features=False, overlays=False, **kw)

    assert run(job(tmp_path / "flat", "contiguous")) == 0 and not any(seen)
    seen.clear()
    assert run(job(tmp_path / "nhwc", "auto")) == 0
    assert seen == [False, False, True, True]  # the plan's two checks (classes), then the 2 batches
    assert json.loads((tmp_path / "nhwc" / "run.json").read_text())["memory_format"] == "channels_last"
    assert {n: (p.data_ptr(), p.stride()) for n, p in model.named_parameters()} == before
    for key in ("p0", "p1", "p2"):
        for c in ("0", "1"):
            np.testing.assert_allclose(np.load(tmp_path / "nhwc" / key / f"gradcam_{c}.npy"),
                                       np.load(tmp_path / "flat" / key / f"gradcam_{c}.npy"), atol=1e-5)

    def stop(out_dir, batch_no, records):
        raise KeyboardInterrupt

    monkeypatch.setattr(results, "commit", stop)
    with pytest.raises(KeyboardInterrupt):
        run(job(tmp_path / "cut", "channels_last"))
    assert {n: (p.data_ptr(), p.stride()) for n, p in model.named_parameters()} == before
    assert fw.run_format(net3d(), "auto", 3) == "contiguous" and fw.run_format(model, "auto", 2) == "channels_last"
