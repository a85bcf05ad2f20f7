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
