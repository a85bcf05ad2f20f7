"""The README's methods table is the registry, and CI runs the README's test command."""

from pathlib import Path

import xcam

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_methods_table_lists_exactly_the_registry():
    table = README.split("<!-- methods-table -->")[1].split("<!-- /methods-table -->")[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    names = [row.split("`")[1] for row in rows]
    assert names == xcam.methods()
    for row, name in zip(rows, names):
        m = xcam.get_method(name)
        assert m.title in row and m.paper in row and f"| {m.needs} |" in row, row
        if m.needs_attention:  # transformer blocks only: no picture on the demo CNN
            assert "(transformers only)" in row
        else:
            assert f"examples/gallery/{name}.jpg" in row and (ROOT / "examples" / "gallery" / f"{name}.jpg").is_file()


def test_ci_runs_the_readme_test_command():
    block = README.split("<!-- test-command -->")[1].split("<!-- /test-command -->")[0]
    assert "pytest" in block and "pip install" in block
    extras = set(block.split('-e ".[')[1].split("]")[0].split(","))
    assert {"medical", "kerashub"} <= extras  # the NIfTI and keras-hub tests run in CI, not skipped
    assert "--no-deps" in block and "ultralytics" in block  # the YOLO tests too (ultralytics wants opencv-python)
    assert "test-command" in (ROOT / ".ci" / "run").read_text()
