"""ultralytics YOLO checkpoints from their files, offline: a YOLOv8n built from the yaml ultralytics ships (3
classes, random weights, never a download), saved as a .pt checkpoint and explained by the CLI with --target
boxes (a boxes file, or the model's own detections): one map per box, each equal to a Grad-CAM written here
with plain autograd on the same score (IoU of the box with the best anchor of its label + that anchor's
score, on the raw pre-NMS output; the map resized and min-max normalized). Pickles load only with
--trust-model; a missing package is a one-line error naming the extra."""

import json
import os

import numpy as np
import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("ultralytics")

import cv2  # noqa: E402

from xcam.app.cli import main  # noqa: E402
from xcam.app.inputs.images import load_image, preprocess  # noqa: E402

pytestmark = pytest.mark.torch

IMAGE = os.path.join(os.path.dirname(__file__), "..", "xcam", "app", "data", "chelsea_cat.png")
HW = (64, 96)
LAYER = "model.15"   # the Detect head's stride-8 input


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("yolo")
    os.environ["YOLO_CONFIG_DIR"] = str(root)   # ultralytics' settings file lands here, not in the home
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    net = DetectionModel("yolov8n.yaml", nc=3, verbose=False).eval()
    net.names = {0: "cat", 1: "dog", 2: "fox"}
    torch.save({"model": net, "train_args": {"imgsz": 64}}, root / "yolov8n.pt")
    return str(root / "yolov8n.pt"), net


def _x():
    return np.ascontiguousarray(preprocess([load_image(IMAGE)], HW, "none").transpose(0, 3, 1, 2))


def _hand_gradcam(net, x, box, label):
    """Grad-CAM of the box score with autograd and torchvision's box_iou, no xcam code."""
    kept = {}
    handle = dict(net.named_modules())[LAYER].register_forward_hook(lambda m, a, o: kept.__setitem__("a", o))
    try:
        y = net(torch.from_numpy(x))[0][0]                       # (4 + K, A)
    finally:
        handle.remove()
    kept["a"].retain_grad()
    xy, wh = y[:2].T, y[2:4].T
    anchors = torch.cat([xy - wh / 2, xy + wh / 2], 1)           # (A, 4) x1 y1 x2 y2
    scores, labels = y[4:].max(0)
    iou = torchvision.ops.box_iou(torch.tensor([box], dtype=torch.float32), anchors)[0]
    iou = torch.where(labels == label, iou, torch.full_like(iou, -1.0))
    best = int(iou.argmax())
    assert float(iou[best].detach()) >= 0.5
    (iou[best] + scores[best]).backward()
    a, g = kept["a"][0].detach().numpy(), kept["a"].grad[0].numpy()
    raw = np.maximum((g.mean((1, 2))[:, None, None] * a).sum(0), 0)
    up = cv2.resize(raw.astype(np.float32), HW[::-1], interpolation=cv2.INTER_LINEAR)
    return (up - up.min()) / (up.max() - up.min())


def _run(path, out, *args):
    code = main(["explain", "--model", path, "--trust-model", "--images", IMAGE, "--out", str(out),
                 "--input-size", f"{HW[0]}x{HW[1]}", "--methods", "gradcam", "--quiet", *args])
    assert code == 0
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def own(checkpoint, tmp_path_factory):
    """The CLI on the model's own detections: (output folder, summary)."""
    out = tmp_path_factory.mktemp("own") / "out"
    return out, _run(checkpoint[0], out, "--target", "boxes:0.001")


def test_own_detections_one_map_per_box(checkpoint, own):
    _, net = checkpoint
    out, summary = own
    assert summary["layer"] == LAYER and summary["input_size"] == list(HW) and summary["normalize"] == "none"
    assert summary["labels"] == ["cat", "dog", "fox"]
    entry = summary["images"][0]
    found = entry["boxes"]
    scores = [b["score"] for b in found]
    assert 2 <= len(found) <= 20 and min(scores) >= 0.001 and scores == sorted(scores, reverse=True)
    assert set(entry["maps"]["gradcam"]) == {f"box{j}" for j in range(len(found))}
    x = _x()
    for j in (0, len(found) - 1):
        cli = np.load(out / entry["maps"]["gradcam"][f"box{j}"]["map"])
        np.testing.assert_allclose(cli, _hand_gradcam(net, x, found[j]["box"], found[j]["label"]), atol=1e-5)
        assert (out / entry["maps"]["gradcam"][f"box{j}"]["overlay"]).is_file()


def test_boxes_file_in_image_pixels(checkpoint, own, tmp_path):
    """A boxes file in the image's own pixels (keyed by file name): the boxes are scaled to the input."""
    path, net = checkpoint
    own = own[1]["images"][0]["boxes"][:2]
    listed = [[v + 1.5 for v in b["box_image"]] + [b["label"]] for b in own]   # off the anchors: IoU < 1
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({os.path.basename(IMAGE): listed}))
    summary = _run(path, tmp_path / "file", "--target", f"boxes:{boxes}", "--no-overlays")
    entry = summary["images"][0]
    scale = np.array([HW[1], HW[0]] * 2) / np.array(load_image(IMAGE).shape[1::-1] * 2)
    np.testing.assert_allclose([b["box"] for b in entry["boxes"]], [np.add(b["box"], 1.5 * scale) for b in own],
                               atol=2e-3)
    x = _x()
    for j, b in enumerate(entry["boxes"]):
        cli = np.load(tmp_path / "file" / entry["maps"]["gradcam"][f"box{j}"]["map"])
        np.testing.assert_allclose(cli, _hand_gradcam(net, x, b["box"], b["label"]), atol=1e-5)


def test_trust_bad_spec_and_missing_package(checkpoint, tmp_path, monkeypatch, capsys):
    path, _ = checkpoint
    base = ["explain", "--model", path, "--images", IMAGE, "--quiet"]
    assert main([*base, "--out", str(tmp_path / "a"), "--target", "boxes"]) == 2
    assert "--trust-model" in capsys.readouterr().err
    assert main([*base, "--trust-model", "--out", str(tmp_path / "b"), "--target", "boxes:many"]) == 2
    assert "boxes:SCORE" in capsys.readouterr().err
    import builtins

    real = builtins.__import__

    def no_ultralytics(name, *args, **kwargs):
        if name.split(".")[0] == "ultralytics":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ultralytics)
    assert main([*base, "--trust-model", "--out", str(tmp_path / "c"), "--target", "boxes"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'xcam[yolo]'" in err and len(err.splitlines()) == 1
