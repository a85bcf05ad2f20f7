"""``xcam evaluate`` end to end on a tiny pickled PyTorch model: the numbers in metrics.json against hand
computations (deletion, Average Drop, pointing game and energy of known maps, run through the model directly),
metrics.csv, the plots, the report, the terminal table, and one test per bad input."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from xcam.app.cli import main
from xcam.app.inputs.images import preprocess

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

pytestmark = pytest.mark.torch
SIZE = 16


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("xcam: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        model[6].weight.mul_(20)  # confident enough that the curves move
    torch.save(model, folder / "tiny.pth")
    rng = np.random.default_rng(0)
    images = []
    for i in range(2):
        path = folder / f"img{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (20, 24, 3), dtype=np.uint8))
        images.append(path)
    return model, folder, images


def evaluate(capsys, setup, out, *extra):
    _, folder, images = setup
    return run_cli(capsys, "evaluate", "--model", folder / "tiny.pth", "--trust-model", "--images", *images,
                   "--input-size", SIZE, "--normalize", "none", "--out", out, "--quiet", *extra)


def inputs_of(images):
    """The model's inputs exactly as xcam preprocesses them (resize to 16x16, /255), channels first."""
    return preprocess([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in images], (SIZE, SIZE),
                      "none").transpose(0, 3, 1, 2)


def probability(model, x, target):
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(np.ascontiguousarray(x[None]))), 1)[0, target].item()


def centre_map():
    """The centre baseline by its formula: exp(-(dy^2 + dx^2) / (2 (0.25 * 16)^2)), centre at 7.5, min-max."""
    d = (np.arange(SIZE) - 7.5) / (0.25 * SIZE)
    g = np.exp(-0.5 * (d[:, None] ** 2 + d[None, :] ** 2))
    return (g - g.min()) / (g.max() - g.min())


def hand_deletion(model, x, heat, target, step=0.25):
    """Deletion by hand: zero the top 64, 128, 192, 256 pixels by the map (stable order), trapezoid over 0..1."""
    order = np.argsort(-heat.reshape(-1), kind="stable")
    ys = []
    for k in range(5):
        y = x.copy().reshape(3, -1)
        y[:, order[:k * 64]] = 0
        ys.append(probability(model, y.reshape(x.shape), target))
    return sum((ys[i] + ys[i + 1]) / 2 * step for i in range(4)), ys


def test_evaluate_writes_hand_checked_numbers(capsys, setup, tmp_path):
    model, folder, images = setup
    out = tmp_path / "ev"
    code, stdout, err = evaluate(capsys, setup, out, "--methods", "gradcam", "--metrics", "deletion", "confidence",
                                 "--step", 0.25)
    assert code == 0, err
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["methods"] == ["gradcam"] and summary["baselines"] == ["random", "centre", "sobel"]
    x = inputs_of(images)
    with torch.no_grad():
        targets = model(torch.from_numpy(x)).argmax(1).numpy()
    assert [e["target"] for e in summary["images"]] == targets.tolist()
    centre = summary["metrics"]["deletion"]["methods"]["centre"]
    moved = 0.0
    for i in range(2):
        auc, ys = hand_deletion(model, x[i], centre_map(), int(targets[i]))
        assert centre["per_image"][i] == pytest.approx(auc, abs=1e-6)
        moved = max(moved, abs(ys[0] - ys[-1]))
    assert moved > 0.05  # the curve really moves: not a trivial comparison
    np.testing.assert_allclose(centre["curve"]["x"], [0, 0.25, 0.5, 0.75, 1])
    assert centre["mean"] == pytest.approx(np.mean(centre["per_image"]))
    assert centre["forwards_per_image"] == 3  # the unperturbed and all-substrate forwards are shared, not counted
    # Average Drop by hand for the gradcam map: max(0, Y - O) / Y * 100 with O = p(map * x)
    import xcam_torch

    heat = xcam_torch.cam(model, torch.from_numpy(x), "3", "gradcam", targets=targets.tolist())  # default layer
    ad = summary["metrics"]["average_drop"]["methods"]["gradcam"]["per_image"]
    for i in range(2):
        y, o = probability(model, x[i], targets[i]), probability(model, x[i] * heat[i][None], targets[i])
        assert ad[i] == pytest.approx(max(0.0, y - o) / y * 100, abs=1e-4)
        auc, _ = hand_deletion(model, x[i], heat[i], int(targets[i]))
        assert summary["metrics"]["deletion"]["methods"]["gradcam"]["per_image"][i] == pytest.approx(auc, abs=1e-6)
    # csv: one row per metric and method, the per-image values in the image columns
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0] == "metric,method,mean,std,forwards_per_image,img0.png,img1.png"
    assert len(rows) == 1 + 4 * 4
    centre_row = next(r for r in rows if r.startswith("deletion,centre,")).split(",")
    assert float(centre_row[5]) == pytest.approx(centre["per_image"][0])
    # plots: a bar chart per metric, a curve plot for deletion; all embedded in the report
    pngs = sorted(p.name for p in (out / "plots").iterdir())
    assert pngs == ["average_drop.png", "average_gain.png", "deletion.png", "deletion_curves.png",
                    "increase_in_confidence.png"]
    curves = cv2.imread(str(out / "plots" / "deletion_curves.png"))
    assert curves.shape == (420, 640, 3) and len(np.unique(curves.reshape(-1, 3), axis=0)) > 10
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 5 and "Deletion AUC" in report
    # the terminal table: a header, a rule, a row per method and baseline, a note
    lines = stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["method", "deletion", "(v)"] and len(lines) == 2 + 4 + 1
    assert lines[2].startswith("gradcam") and lines[4].startswith("centre *")
    assert f"{centre['mean']:.4g}" in lines[4]


def test_localization_from_boxes_by_hand(capsys, setup, tmp_path):
    _, folder, images = setup
    boxes = folder / "boxes.json"
    # in the images' own pixels (24 wide, 20 high), scaled to 16x16: img0's box covers the centre, img1's a corner
    boxes.write_text(json.dumps({"img0.png": [6, 5, 18, 15], "img1": [[0, 0, 3, 5]]}))
    out = tmp_path / "loc"
    code, _, err = evaluate(capsys, setup, out, "--methods", "gradcam", "--metrics", "localization", "--boxes", boxes,
                            "--tolerance", 2)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    assert m["pointing_game"]["methods"]["centre"]["per_image"] == [1.0, 0.0]
    g = centre_map()
    inside0 = g[4:12, 4:12].sum() / g.sum()  # x 6..18 of 24 -> 4..12 of 16; y 5..15 of 20 -> 4..12
    inside1 = g[0:4, 0:2].sum() / g.sum()    # x 0..3 -> 0..2; y 0..5 -> 0..4
    np.testing.assert_allclose(m["energy_pointing_game"]["methods"]["centre"]["per_image"], [inside0, inside1],
                               rtol=1e-6)
    np.testing.assert_allclose(m["relevance_mass"]["methods"]["centre"]["per_image"], [inside0, inside1], rtol=1e-6)
    box = np.zeros((SIZE, SIZE), bool)
    box[4:12, 4:12] = True
    top64 = np.argsort(-g.reshape(-1), kind="stable")[:64]  # the 64 most central pixels: a disc, not the square
    assert m["relevance_rank"]["methods"]["centre"]["per_image"][0] == pytest.approx(box.reshape(-1)[top64].mean())


def test_randomization_through_the_cli(capsys, setup, tmp_path):
    out = tmp_path / "rand"
    code, _, err = evaluate(capsys, setup, out, "--methods", "gradcam", "--metrics", "randomization",
                            "--cascade-top", 2, "--no-baselines")
    assert code == 0, err
    summary = json.loads((out / "metrics.json").read_text())
    rows = summary["randomization"]["gradcam"]["rows"]
    assert [r["layer"] for r in rows] == ["6", "2"] and [r["step"] for r in rows] == [1, 2]
    assert summary["metrics"]["mprt_ssim"]["methods"]["gradcam"]["per_image"] == \
        summary["randomization"]["gradcam"]["final_ssim"]
    assert "Cascading randomization" in (out / "report.html").read_text()
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["mprt_spearman.png", "mprt_spearman_curves.png",
                                                                 "mprt_ssim.png", "mprt_ssim_curves.png"]


def test_baselines_fail_the_randomization_check(capsys, setup, tmp_path):
    out = tmp_path / "base"
    code, _, err = evaluate(capsys, setup, out, "--methods", "gradcam", "--metrics", "mprt_ssim", "--cascade-top", 1)
    assert code == 0, err
    ssim = json.loads((out / "metrics.json").read_text())["metrics"]["mprt_ssim"]["methods"]
    for name in ("random", "centre", "sobel"):  # they ignore the model: identical maps after randomization
        assert ssim[name]["per_image"] == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("extra, message", [
    (["--metrics", "deletoin"], "unknown metric 'deletoin'; valid: deletion, insertion"),
    (["--metrics", "pointing_game"], "pointing_game needs ground truth: give --masks"),
    (["--methods", "gradcam", "nosuch"], "nosuch"),
    (["--masks", "a.png"], "1 masks given for 2 images; give one mask per image"),
    (["--target", "7"], "--target must be 'top1' or one class"),
    (["--step", "0"], "step must be a fraction of the pixels in (0, 1]"),
])
def test_bad_input_is_one_line(capsys, setup, tmp_path, extra, message):
    out = tmp_path / "bad"
    code, _, err = evaluate(capsys, setup, out, *extra)
    assert code == 2
    assert message in error_line(err)
    assert not out.exists() and not list(tmp_path.glob(".bad.*partial"))


def test_boxes_file_without_an_entry_for_an_image(capsys, setup, tmp_path):
    _, folder, _ = setup
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"img0.png": [0, 0, 4, 4]}))
    code, _, err = evaluate(capsys, setup, tmp_path / "o", "--metrics", "localization", "--boxes", boxes)
    assert code == 2 and "no entry for 'img1.png'" in error_line(err)


def test_masks_files_are_read_at_the_input_size(capsys, setup, tmp_path):
    _, folder, images = setup
    masks = []
    for i in range(2):
        mask = np.zeros((20, 24), np.uint8)
        mask[:10, :12] = 255  # the top-left quarter
        cv2.imwrite(str(tmp_path / f"m{i}.png"), mask)
        masks.append(tmp_path / f"m{i}.png")
    out = tmp_path / "masks"
    code, _, err = evaluate(capsys, setup, out, "--metrics", "energy_pointing_game", "--masks", *masks)
    assert code == 0, err
    g = centre_map()
    energy = json.loads((out / "metrics.json").read_text())["metrics"]["energy_pointing_game"]["methods"]["centre"]
    np.testing.assert_allclose(energy["per_image"], [g[:8, :8].sum() / g.sum()] * 2, rtol=1e-6)
    assert Path(out / "report.html").is_file()
