"""Large runs of ``xcam explain``: --images expansion, streaming in fixed batches, resume after an interruption
(byte-identical outputs), nothing half-written, the paged report, map size/dtype options, progress, errors."""

import io
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from xcam import XcamError
from xcam.app.cli import main
from xcam.app.inputs.images import load_image, preprocess
from xcam.app.inputs.sources import expand_images
from xcam.app.jobs.explain import Job, run
from xcam.app.outputs import files, results

pytestmark = pytest.mark.torch
SIDE = 16


def write_images(folder: Path, count: int, seed: int = 0, start: int = 0) -> list[Path]:
    rng = np.random.RandomState(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        img = rng.randint(0, 256, size=(12 + i % 5, 10 + i % 7, 3)).astype(np.uint8)
        path = folder / f"img{i:03d}.png"
        cv2.imwrite(str(path), img)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def net():
    """conv(3->4, stride 2) -> ReLU ["1"] -> conv(4->3) ["2"] -> ReLU -> pool -> linear(3->2): a 16x16 input
    gives an 8x8 layer, so layer-size and input-size maps differ."""
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)).eval()


def make_job(net, images, out, **kwargs):
    from xcam.app.models.frameworks import load_framework

    options = dict(methods=["gradcam", "layercam"], classes=["cat", "dog"], labels=["cat", "dog"], layer="2",
                   input_size=SIDE, batch_size=3, log=None)
    options.update(kwargs)
    return Job(framework=load_framework("torch"), model=net, model_name="net", images=images, out=Path(out),
               **options)


def tree(folder: Path) -> dict:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def photos(tmp_path):
    write_images(tmp_path / "photos", 10)
    bad = tmp_path / "photos" / "img004b.png"
    bad.write_text("not an image")  # sorts between img004 and img005: batch 1 has an unreadable image
    return tmp_path / "photos"


# ---------------------------------------------------------------------------------------------- sources


def test_sources_expand_files_directories_globs_and_lists(tmp_path):
    a = write_images(tmp_path / "a", 2)
    b = write_images(tmp_path / "a" / "deep" / "b", 2, start=5)
    (tmp_path / "a" / "notes.txt").write_text("not listed: a directory takes image extensions only")
    (tmp_path / "a" / ".hidden").mkdir()
    cv2.imwrite(str(tmp_path / "a" / ".hidden" / "x.png"), np.zeros((4, 4, 3), np.uint8))
    up = tmp_path / "c" / "IMG.JPG"
    up.parent.mkdir()
    cv2.imwrite(str(up), np.zeros((4, 4, 3), np.uint8))
    listing = tmp_path / "list.txt"
    listing.write_text(f"# a comment\n\nc/IMG.JPG\n{a[0]}\n")
    # order given; a directory recursively and sorted; duplicates (a[0] twice, b via glob) kept once
    got = expand_images([str(b[1]), str(tmp_path / "a"), str(listing), str(tmp_path / "a" / "deep" / "**" / "*.png")])
    assert got == [str(b[1]), str(b[0]), str(a[0]), str(a[1]), str(up)]  # "a/deep/..." < "a/img..."
    assert expand_images(str(tmp_path / "**" / "img00[01].png")) == [str(a[0]), str(a[1])]


def test_sources_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(XcamError, match=r"^no image files in directory .*empty' \(extensions: .*\.jpg"):
        expand_images([str(tmp_path / "empty")])
    with pytest.raises(XcamError, match=r"^no image files match .*nothing\*\.png"):
        expand_images([str(tmp_path / "nothing*.png")])
    listing = tmp_path / "l.txt"
    listing.write_text("missing.png\n")
    with pytest.raises(XcamError, match=r"l.txt' line 1: no such file or directory: .*missing.png"):
        expand_images([str(listing)])
    # a missing file named on the command line is not fatal: it is reported as unreadable by the run
    assert expand_images([str(tmp_path / "gone.png")]) == [str(tmp_path / "gone.png")]


def test_output_folder_names_never_collide():
    from xcam.app.jobs.explain import unique_keys

    assert unique_keys(["a/x.png", "b/x.jpg", "c/x-2.png", "d/x.png", "pages.png", ".hid.png"]) == \
        ["x", "x-2", "x-2-2", "x-3", "_pages", "_.hid"]


# ------------------------------------------------------------------------- streaming: values and options


def test_maps_equal_the_library_at_input_and_layer_size_in_both_dtypes(net, tmp_path):
    import xcam_torch

    paths = write_images(tmp_path / "p", 4)
    x = preprocess([load_image(p) for p in paths], (SIDE, SIDE)).transpose(0, 3, 1, 2)
    full = xcam_torch.cam(net, x, "2", "gradcam", classes=[0, 1])
    small = xcam_torch.cam(net, x, "2", "layercam", classes=[0, 1], size=(8, 8))
    assert full.shape == (4, 2, SIDE, SIDE)
    run(make_job(net, [str(tmp_path / "p")], tmp_path / "o32"))
    run(make_job(net, [str(tmp_path / "p")], tmp_path / "o16", map_size="layer", map_dtype="float16",
                 overlays=False, features=False))
    s32 = json.loads((tmp_path / "o32" / "summary.json").read_text())
    s16 = json.loads((tmp_path / "o16" / "summary.json").read_text())
    for i, (e32, e16) in enumerate(zip(s32["images"], s16["images"])):
        m = np.load(tmp_path / "o32" / e32["maps"]["gradcam"]["dog"]["map"])
        assert m.dtype == np.float32 and m.shape == (SIDE, SIDE)
        np.testing.assert_allclose(m, full[i, 1], atol=1e-6)
        h = np.load(tmp_path / "o16" / e16["maps"]["layercam"]["cat"]["map"])
        assert h.dtype == np.float16 and h.shape == (8, 8)
        # float16 of the same float32 map to one float16 step (the streamed batches round 1e-7 differently)
        np.testing.assert_allclose(h.astype(np.float32), small[i, 0], rtol=2 ** -10, atol=1e-7)
        assert "overlay" not in e16["maps"]["layercam"]["cat"] and "features" not in e16
        assert e32["probabilities"]["cat"] + e32["probabilities"]["dog"] == pytest.approx(1, abs=1e-5)
    assert not list((tmp_path / "o16").rglob("*.png"))  # --no-overlays --no-features
    assert len(list((tmp_path / "o32").rglob("*.png"))) == 4 * (1 + 4)


def test_capture_options_reach_the_adapter(net, tmp_path):
    from xcam.app.models.frameworks import Framework, load_framework

    seen = []

    class Recording(Framework):
        def capture(self, model, batch, layer, **kwargs):
            seen.append(kwargs.pop("marker", None))
            return super().capture(model, batch, layer, **kwargs)

    fw = load_framework("torch")
    job = make_job(net, [str(p) for p in write_images(tmp_path / "p", 2)], tmp_path / "o",
                   capture_options={"marker": "here"})
    job.framework = Recording(fw.name, fw.adapter, fw.models)
    assert run(job) == 0
    assert seen and set(seen) == {"here"}


def test_a_batch_runs_while_the_next_is_decoded_and_memory_is_bounded(net, tmp_path, monkeypatch):
    from xcam.app.engines import local as stream

    decoded, explained = [], []
    real = stream.load_one

    def counting(plan, index, key, path):
        decoded.append(index)
        return real(plan, index, key, path)

    monkeypatch.setattr(stream, "load_one", counting)
    from xcam.app.engines import batch as batch_module

    original = batch_module.Worker.submit  # the model's step of a batch (its pictures are drawn beside it)

    def watch(self, batch_no, loaded):
        explained.append((batch_no, len(decoded)))
        return original(self, batch_no, loaded)

    monkeypatch.setattr(batch_module.Worker, "submit", watch)
    write_images(tmp_path / "p", 12)
    run(make_job(net, [str(tmp_path / "p")], tmp_path / "o"))
    # batches of 3, decoded at most 2 batches ahead: when batch b runs, at most images of b and b+1 were read
    assert [b for b, _ in explained] == [0, 1, 2, 3]
    for b, seen in explained:
        assert 3 * (b + 1) <= seen <= 3 * (b + 2)


# ------------------------------------------------------------------------------------------------ resume


def test_resume_after_interruptions_gives_byte_identical_outputs(net, photos, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    assert run(make_job(net, [str(photos)], whole)) == 1  # one unreadable image
    reference = tree(whole)
    assert sorted(n for n in reference if "/" not in n) == ["report.html", "results.jsonl", "run.json",
                                                            "summary.json"]
    lines = [json.loads(x) for x in reference["results.jsonl"].decode().splitlines()]
    assert [r["index"] for r in lines] == list(range(11)) and lines[5]["error"].startswith("cannot read image")

    out = tmp_path / "cut"
    # 1) a crash half-way through writing a batch's files (batch 2, after its 3rd map file)
    real_npy, calls = files.write_npy, []

    def crash_npy(path, array):
        calls.append(path)
        if len(calls) == 5 * 4 + 3:  # batches 0 and 1 hold 5 readable images with 4 maps each
            raise KeyboardInterrupt
        real_npy(path, array)

    monkeypatch.setattr(files, "write_npy", crash_npy)
    with pytest.raises(KeyboardInterrupt):
        run(make_job(net, [str(photos)], out))
    monkeypatch.setattr(files, "write_npy", real_npy)
    assert_nothing_half_written(out, batches_done=2)

    # 2) resumed, then stopped after batch 3's folders were moved into place and one and a half of its lines
    #    were appended (a torn write)
    real_commit = results.commit

    def crash_commit(out_dir, batch_no, records):
        if batch_no == 3:
            real_commit(out_dir, batch_no, [])
            with open(Path(out_dir) / "results.jsonl", "ab") as f:
                f.write((json.dumps(records[0]) + "\n" + json.dumps(records[1])[:20]).encode())
            raise KeyboardInterrupt
        real_commit(out_dir, batch_no, records)

    monkeypatch.setattr(results, "commit", crash_commit)
    with pytest.raises(KeyboardInterrupt):
        run(make_job(net, [str(photos)], out, resume=True))
    monkeypatch.undo()
    text = (out / "results.jsonl").read_text()
    assert text.count("\n") == 9 + 1 and not text.endswith("\n")

    # 3) resumed to the end: the same bytes as the uninterrupted run, and no staging area left
    assert run(make_job(net, [str(photos)], out, resume=True)) == 1
    assert tree(out) == reference
    # resuming a finished run changes nothing
    assert run(make_job(net, [str(photos)], out, resume=True)) == 1
    assert tree(out) == reference


def assert_nothing_half_written(out: Path, batches_done: int):
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * batches_done
    assert not (out / "summary.json").exists() and not (out / "report.html").exists()
    visible = sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert visible == sorted(r["key"] for r in lines if "key" in r)
    for r in lines:
        if "key" in r:
            assert sorted(p.name for p in (out / r["key"]).iterdir()) == sorted(
                [f"{m}_{c}.{ext}" for m in ("gradcam", "layercam") for c in ("cat", "dog") for ext in ("npy", "png")]
                + ["features.png"])
    assert not [p for p in out.rglob("*.part") if ".staging" not in p.parts]


def test_resume_refuses_other_settings_and_starts_when_nothing_is_there(net, photos, tmp_path):
    out = tmp_path / "o"
    assert run(make_job(net, [str(photos)], out, resume=True)) == 1  # nothing to resume: a fresh run
    before = tree(out)
    with pytest.raises(XcamError, match=r"cannot resume .*the settings differ .*batch_size: 3 then, 4 now"):
        run(make_job(net, [str(photos)], out, resume=True, batch_size=4))
    with pytest.raises(XcamError, match=r"output directory .* exists; pass --overwrite"):
        run(make_job(net, [str(photos)], out))
    assert tree(out) == before
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(XcamError, match=r"cannot resume: .*other' has no run.json"):
        run(make_job(net, [str(photos)], other, resume=True))


# ------------------------------------------------------------------------------------------------ report


def test_paged_report_links_to_files_in_pages_of_at_most_100(net, tmp_path):
    write_images(tmp_path / "p", 205)
    out = tmp_path / "o"
    assert run(make_job(net, [str(tmp_path / "p")], out, methods=["gradcam"], classes=["top1"], labels=None,
                        batch_size=32, features=False)) == 0
    index = (out / "report.html").read_text()
    assert "data:image" not in index and "205 images on 3 pages" in index
    pages = sorted((out / "pages").iterdir())
    assert [p.name for p in pages] == ["page-000001.html", "page-000002.html", "page-000003.html"]
    rows = [p.read_text().count("<tr>") - 1 for p in pages]
    assert rows == [100, 100, 5]
    for page in pages:
        text = page.read_text()
        assert "data:image" not in text and "<a href='../report.html'>index</a>" in text
        for link in set(__import__("re").findall(r"(?:src|href)='([^'#]+)'", text)):
            assert (page.parent / link).resolve().exists(), link
    assert "page-000002.html'>page 2 &rarr;" in pages[0].read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["images"]) == 205 and (out / summary["images"][204]["thumbnail"]).is_file()


def test_single_page_is_self_contained_and_auto_switches_above_100(net, tmp_path):
    paths = write_images(tmp_path / "p", 3)
    out = tmp_path / "o"
    run(make_job(net, [str(p) for p in paths], out, overlays=False))
    html = (out / "report.html").read_text()
    # no overlay files, yet the page shows each map over its image: 3 originals + 3 grids + 3 x 4 overlays
    assert html.count("data:image/png;base64,") == 3 + 3 + 12 and html.count("<tr>") == 4
    assert not (out / "pages").exists()
    write_images(tmp_path / "q", 101)
    run(make_job(net, [str(tmp_path / "q")], tmp_path / "big", methods=["gradcam"], overlays=False, features=False,
                 batch_size=64))
    assert (tmp_path / "big" / "pages" / "page-000002.html").is_file()


# ---------------------------------------------------------------------------------------- CLI and progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(net, tmp_path):
    write_images(tmp_path / "p", 7)
    tty, pipe = Terminal(), io.StringIO()
    run(make_job(net, [str(tmp_path / "p")], tmp_path / "a", log=tty))
    run(make_job(net, [str(tmp_path / "p")], tmp_path / "b", log=pipe))
    assert "7/7" in tty.getvalue() and "img/s" in tty.getvalue()
    assert "img/s" not in pipe.getvalue() and "xcam: wrote" in pipe.getvalue()


def test_cli_directory_input_unreadable_image_and_bad_options(tmp_path, capsys, photos):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model_path = tmp_path / "sq.pth"
    torch.save(torchvision.models.squeezenet1_1(num_classes=2).state_dict(), model_path)
    base = ["explain", "--model", str(model_path), "--arch", "squeezenet1_1", "--num-classes", "2",
            "--input-size", "64", "--methods", "gradcam", "--batch-size", "4"]
    out = tmp_path / "o"
    code = main([*base, "--images", str(photos), "--out", str(out), "--map-dtype", "float16", "--no-overlays"])
    err = capsys.readouterr().err
    assert code == 1 and f"cannot read image {str(photos / 'img004b.png')!r}" in err
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["images"]) == 10 and len(summary["errors"]) == 1
    assert np.load(out / summary["images"][0]["maps"]["gradcam"]["top-1"]["map"]).dtype == np.float16
    code = main([*base, "--images", str(photos), "--out", str(out), "--resume", "--map-dtype", "float32"])
    err = capsys.readouterr().err
    assert code == 2 and "map_dtype: 'float16' then, 'float32' now" in err
    assert len([line for line in err.splitlines() if line.startswith("xcam: error:")]) == 1
    (tmp_path / "empty").mkdir()
    code = main([*base, "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert code == 2 and err.splitlines() == [err.splitlines()[0]] and "error: no image files in directory" in err
    assert not (tmp_path / "e").exists()
    code = main([*base, "--images", str(photos), "--out", str(tmp_path / "z"), "--batch-size", "0"])
    assert code == 2 and "argument --batch-size: must be a positive integer" in capsys.readouterr().err


def test_interrupted_cli_says_how_to_resume(tmp_path, capsys, monkeypatch, net):
    from xcam.app import cli

    def stop(job):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run", stop)
    monkeypatch.setattr(cli.ModelSpec, "build", lambda self: (None, net))
    code = main(["explain", "--model", "m.pth", "--images", "x.png", "--out", str(tmp_path / "o")])
    assert code == 130 and "--resume" in capsys.readouterr().err


def test_keras_job_streams_the_same_maps_as_the_adapter(tmp_path):
    pytest.importorskip("tensorflow")
    from kits import make_kit

    import xcam_tf
    from xcam.app.models.frameworks import load_framework

    kit = make_kit("tf")
    paths = write_images(tmp_path / "p", 4)
    out = tmp_path / "o"
    job = Job(framework=load_framework("tf"), model=kit.model, model_name="tiny", images=[str(tmp_path / "p")],
              out=out, methods=["gradcam"], layer="conv2", input_size=8, batch_size=3, log=None,
              map_size="layer", overlays=False, features=False)
    assert run(job) == 0
    x = preprocess([load_image(p) for p in paths], (8, 8))
    maps = xcam_tf.cam(kit.model, x, "conv2", "gradcam", size=(8, 8))
    for i, entry in enumerate(json.loads((out / "summary.json").read_text())["images"]):
        np.testing.assert_allclose(np.load(out / entry["maps"]["gradcam"]["top-1"]["map"]), maps[i], atol=1e-6)
    assert os.listdir(out / entry["key"]) == [f"gradcam_{entry['predicted']}.npy"]
