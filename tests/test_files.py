"""Output directories are replaced in one rename, or not at all."""

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
