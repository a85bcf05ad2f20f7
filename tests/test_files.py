"""Output directories are replaced in one rename, or not at all."""

import numpy as np
import pytest

from xcam import XcamError
from xcam.app.outputs.files import staged_dir, write_text


def test_staged_dir_replaces_on_success_and_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out"
    with staged_dir(out) as stage:
        write_text(stage / "a.txt", "first")
    assert (out / "a.txt").read_text() == "first"
    with pytest.raises(XcamError, match=f"output directory {str(out)!r} exists; pass --overwrite"):
        with staged_dir(out):
            pass
    with pytest.raises(RuntimeError):
        with staged_dir(out, overwrite=True) as stage:
            write_text(stage / "a.txt", "second")
            raise RuntimeError("half way")
    assert (out / "a.txt").read_text() == "first"           # the old output is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # and no staging directory is left
    with staged_dir(out, overwrite=True) as stage:
        write_text(stage / "b.txt", "third")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]


def test_npy_maps_read_back_from_many_threads_at_once(tmp_path):
    """The report reads maps in a thread pool: every thread gets its own file's values (NumPy parses .npy
    headers with ``ast``, which CPython 3.11 does not guard across threads; ``files.read_npy`` does)."""
    from concurrent.futures import ThreadPoolExecutor

    from xcam.app.outputs import files

    arrays = [np.full((16, 16), i, np.float32) + np.eye(16, dtype=np.float32) for i in range(64)]
    for i, a in enumerate(arrays):
        files.write_npy(tmp_path / f"{i}.npy", a)
    with ThreadPoolExecutor(8) as pool:
        back = list(pool.map(lambda i: files.read_npy(tmp_path / f"{i}.npy"), range(64)))
    for a, b in zip(arrays, back):
        np.testing.assert_array_equal(b, a)


def test_png_pictures_keep_their_pixels_and_grids_deflate_better_than_opencvs_default(tmp_path):
    import cv2

    from xcam.app.outputs.files import write_png
    from xcam.viz import feature_grid_gray, overlay
    rng = np.random.default_rng(0)
    acts = cv2.resize(rng.random((7, 7 * 64)).astype(np.float32), (14 * 64, 14)).reshape(14, 64, 14)
    grid = feature_grid_gray(np.ascontiguousarray(acts.transpose(1, 0, 2)))       # 64 smooth 14x14 channels
    photo = cv2.GaussianBlur((rng.random((120, 160, 3)) * 255).astype(np.uint8), (9, 9), 3)
    pictures = {"grid.png": (grid, False), "overlay.png": (overlay(photo, rng.random((120, 160)), alpha=0.5), True)}
    for name, (pic, is_photo) in pictures.items():
        write_png(tmp_path / name, pic, photo=is_photo)
        back = cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(back if back.ndim == 2 else cv2.cvtColor(back, cv2.COLOR_BGR2RGB), pic)
    run_length = len(cv2.imencode(".png", grid)[1])                             # OpenCV's own default strategy
    assert (tmp_path / "grid.png").stat().st_size < run_length
