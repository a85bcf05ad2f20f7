"""xcam view's state (``xcam.app.jobs.view.Viewer``), without a browser: its maps are the adapter's ``cam`` maps,
changes of method, class, alpha and colormap reuse the cached capture, and bad input is a one-line XcamError."""

import cv2
import numpy as np
import pytest

from xcam.app.cli import main
from xcam.app.inputs.images import preprocess
from xcam.app.jobs import view
from xcam.app.models.frameworks import load_framework
from xcam.errors import XcamError
from xcam.viz import overlay

SIDE = 8


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    rgb = np.random.RandomState(3).randint(0, 256, (20, 24, 3)).astype(np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _viewer(fw, photo, top_k=1):
    return view.Viewer(load_framework(fw.name), fw.model, "tiny", [photo], labels=["a", "b"], layer="conv2",
                       input_size=SIDE, normalize="none", top_k=top_k)


def _inputs(fw, photo):
    x = preprocess([cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)], (SIDE, SIDE), "none")
    return x.transpose(0, 3, 1, 2).copy() if fw.name == "torch" else x


def test_viewer_maps_are_the_adapters_cams_and_changes_reuse_the_capture(fw, photo):
    v = _viewer(fw, photo)
    key = next(iter(v.pictures))
    x = _inputs(fw, photo)
    top = v.predictions(key, "conv2")
    assert len(top) == 1 and v.captures_made == 2  # a forward for the top-1 class, then its gradients
    other = 1 - top[0][0]
    probe_methods = ("scorecam",) if fw.name == "torch" else ()  # the probe path is the same code for both
    for method in ("gradcam", "layercam", "cam", *probe_methods):
        for c in (top[0][0], other):
            expected = fw.module.cam(fw.model, x, "conv2", method, targets=[c], size=(SIDE, SIDE))[0]
            np.testing.assert_allclose(v.map(key, "conv2", method, c), expected, atol=1e-5)
    assert v.captures_made == 3  # + one capture of the class outside the top 1, shared by every method
    out = v.render(key, "conv2", ["gradcam", "layercam"], ["a", 1], alpha=0.3, colormap="viridis")
    assert v.captures_made == 3 and list(out["maps"]) == [("gradcam", "a"), ("gradcam", "b"), ("layercam", "a"),
                                                          ("layercam", "b")]
    shown = v.picture(key).shown
    np.testing.assert_array_equal(out["tiles"][2][1], overlay(shown, out["maps"]["gradcam", "b"], 0.3, "viridis"))
    assert [t for t, _ in out["tiles"]] == ["image", "gradcam · a", "gradcam · b", "layercam · a", "layercam · b"]


@pytest.mark.torch
def test_viewer_bad_input_is_a_one_line_error(photo, tmp_path):
    from kits import make_kit

    v = _viewer(make_kit("torch"), photo, top_k=2)
    key = next(iter(v.pictures))
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(XcamError, match="cannot read image 'notes.png': not an image file"):
        v.add(text)
    with pytest.raises(XcamError, match="layer 'fc' outputs shape .* not a spatial map"):
        v.capture(key, "fc")
    with pytest.raises(XcamError, match="unknown class 'zebra'"):
        v.render(key, "conv2", ["gradcam"], ["zebra"])
    with pytest.raises(XcamError, match="pick at least one method"):
        v.render(key, "conv2", [], [0])
    assert [name for _, name in v.layer_choices()][-3:] == ["act2", "pool", "fc"]
    shown = dict((name, text) for text, name in v.layer_choices())
    assert shown["fc"] == "fc  2 (no spatial output)" and shown["conv2"] == "conv2  3x8x8 (default)"


def test_the_page_says_where_it_listens():
    assert "this machine only" in view.where_note("127.0.0.1", 8000)
    assert "other machines" in view.where_note("0.0.0.0", 8000)


def test_cli_view_takes_demo_or_model(capsys):
    assert main(["view"]) == 2
    assert main(["view", "--demo", "--model", "m.pt"]) == 2
    assert capsys.readouterr().err.count("takes --demo (the bundled model) or --model PATH") == 2
