"""xcam.show / xcam.show_cam: the inline grid Jupyter displays holds exactly the overlays the core computes."""

import base64

import cv2
import numpy as np
import pytest

import xcam


def _image():
    y, x = np.mgrid[0:12, 0:16]
    return np.stack([x * 15, y * 20, (x + y) * 9], axis=2).astype(np.uint8)


def _decode(png: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_show_tiles_are_the_core_overlays_and_the_png_holds_them():
    img = _image()
    a = np.linspace(0, 1, 12 * 16, dtype=np.float32).reshape(12, 16)
    maps = {"gradcam": a, "layercam": 1 - a}
    shown = xcam.show(img, maps, alpha=0.3, colormap="viridis")
    assert [t for t, _ in shown.tiles] == ["image", "gradcam", "layercam"]
    np.testing.assert_array_equal(shown.tiles[0][1], img)
    np.testing.assert_array_equal(shown.tiles[2][1], xcam.overlay(img, 1 - a, 0.3, "viridis"))
    grid = _decode(shown._repr_png_())
    # tile k of the single row sits at x = 4 + k * (16 + 4), under the title band
    y = 4 + xcam.notebook.TITLE_BAND
    np.testing.assert_array_equal(grid[y:y + 12, 4 + 2 * 20:4 + 2 * 20 + 16], shown.tiles[2][1])
    assert grid.shape == (4 + 12 + xcam.notebook.TITLE_BAND + 4, 4 + 3 * 20, 3)


def test_show_html_embeds_each_overlay_with_its_escaped_title():
    img = _image()
    a = np.eye(12, 16, dtype=np.float32)
    page = xcam.show(img, [a], titles=["<cls> & co"], original=False)._repr_html_()
    assert "&lt;cls&gt; &amp; co" in page and "<cls>" not in page
    data = page.split("base64,")[1].split('"')[0]
    np.testing.assert_array_equal(_decode(base64.b64decode(data)), xcam.overlay(img, a))


def test_show_cam_one_tile_per_image_and_key_on_channels_first_inputs():
    batch = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    maps = np.random.default_rng(1).random((2, 8, 8)).astype(np.float32)
    shown = xcam.show_cam(batch, {"cat": maps, "dog": 1 - maps})
    assert [t for t, _ in shown.tiles] == ["image 0", "0: cat", "0: dog", "image 1", "1: cat", "1: dog"]
    hwc = np.transpose(batch[1], (1, 2, 0))
    shown_img = (hwc - hwc.min()) / (hwc.max() - hwc.min())
    np.testing.assert_array_equal(shown.tiles[5][1], xcam.overlay(shown_img, 1 - maps[1]))


@pytest.mark.parametrize("maps, titles, words", [
    (np.zeros((2, 3, 4, 4)), None, "must be (H, W)"),
    ([np.zeros((4, 4))], ["a", "b"], "1 maps but 2 titles"),
    ({}, None, "at least one map"),
])
def test_show_bad_input_is_one_line(maps, titles, words):
    with pytest.raises(xcam.XcamError, match=words.replace("(", r"\(").replace(")", r"\)")):
        xcam.show(np.zeros((4, 4, 3), np.uint8), maps, titles)


def test_show_cam_wrong_batch_is_one_line():
    with pytest.raises(xcam.XcamError, match="N = 2 images"):
        xcam.show_cam(np.zeros((2, 3, 4, 4)), np.zeros((3, 4, 4)))


def test_show_cam_several_classes_split_by_label():
    batch = np.random.default_rng(2).random((1, 6, 6, 3)).astype(np.float32)
    maps = np.random.default_rng(3).random((1, 2, 6, 6)).astype(np.float32)
    shown = xcam.show_cam(batch, maps, labels=["cat", "dog"])
    assert [t for t, _ in shown.tiles] == ["image 0", "0: cat", "0: dog"]
    img = (batch[0] - batch[0].min()) / (batch[0].max() - batch[0].min())
    np.testing.assert_array_equal(shown.tiles[2][1], xcam.overlay(img, maps[0, 1]))
    with pytest.raises(xcam.XcamError, match="2 classes but 1 labels"):
        xcam.show_cam(batch, maps, labels=["cat"])


def test_example_notebook_runs_end_to_end_and_its_outputs_hold_images(tmp_path):
    """examples/notebook.ipynb executed by nbclient on ipykernel: every cell runs, the pictures are PNGs."""
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install 'xcam[notebook]')")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install 'xcam[notebook]')")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install 'xcam[notebook]')")
    pytest.importorskip("torch", reason="the notebook runs the PyTorch demo model")
    pytest.importorskip("keras", reason="the notebook runs the Keras demo model")
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "notebook.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parents[1])}}).execute()
    pictures = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", out
            data = out.get("data", {})
            if "image/png" in data:
                pictures.append(_decode(base64.b64decode(data["image/png"])))
            if "text/html" in data:
                assert "data:image/png;base64," in data["text/html"]
    assert len(pictures) == 4  # torch maps, show_cam, feature grid, keras maps
    assert all(p.ndim == 3 and p.shape[0] > 100 and p.std() > 10 for p in pictures)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    diff = float(text.split("maps:")[1])
    assert diff < 1e-2  # the torch and Keras ports give the same maps
