"""The house rules, checked on the source: imports run one way (the core never names an adapter, a framework
or the app), there is no import cycle among xcam's modules, no deferred import is left in the core, and both
adapters satisfy the written contract (``xcam.contract.Adapter`` and ``Probe``). The app (``xcam.app``) is in
rooms: packages with a one-line docstring, only the CLI beside them, and no import cycle through them either
(deferred imports count)."""

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("xcam", "xcam_torch", "xcam_tf")
FORBIDDEN_IN_CORE = ("xcam_torch", "xcam_tf", "xcam.app", "torch", "torchvision", "tensorflow", "keras")
ENTRY_POINTS = {"xcam.__main__"}  # executed by `python -m xcam`, never imported by the core


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield module_name(path), path, ast.parse(path.read_text(), str(path))


def imported(name: str, path: Path, tree: ast.AST):
    """(absolute module imported, whether at module level) for every import statement."""
    top = {id(node) for node in tree.body}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [base] if node.module else [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                yield t, id(node) in top


def is_core(name: str) -> bool:
    return (name == "xcam" or name.startswith("xcam.")) and not name.startswith("xcam.app") \
        and name not in ENTRY_POINTS


def test_core_imports_no_adapter_framework_or_app():
    offences = [f"{name} imports {target}" for name, path, tree in sources() if is_core(name)
                for target, _ in imported(name, path, tree)
                if any(target == f or target.startswith(f + ".") for f in FORBIDDEN_IN_CORE)]
    assert not offences, offences


def test_core_imports_only_numpy_opencv_and_the_standard_library():
    import sys

    allowed = {"numpy", "cv2", "xcam"} | set(sys.stdlib_module_names)
    offences = [f"{name} imports {target}" for name, path, tree in sources() if is_core(name)
                for target, _ in imported(name, path, tree) if target.split(".")[0] not in allowed]
    assert not offences, offences


def test_no_deferred_imports_in_the_core():
    offences = [f"{name} imports {target} inside a function" for name, path, tree in sources() if is_core(name)
                for target, top in imported(name, path, tree) if not top]
    assert not offences, offences


def test_adapters_import_neither_each_other_nor_the_app():
    offences = []
    for name, path, tree in sources():
        if name.split(".")[0] in ("xcam_torch", "xcam_tf"):
            other = "xcam_tf" if name.startswith("xcam_torch") else "xcam_torch"
            offences += [f"{name} imports {t}" for t, _ in imported(name, path, tree)
                         if t.startswith(other) or t.startswith("xcam.app")]
    assert not offences, offences


def import_graph(deferred: bool = False) -> dict:
    """Module -> the xcam modules it imports at module level (and, with ``deferred``, inside functions too);
    an import of a name resolves to its module."""
    known = {name for name, _, _ in sources()}
    graph = {}
    for name, path, tree in sources():
        deps = set()
        for target, top in imported(name, path, tree):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and (top or deferred):
                deps.add(target)
        graph[name] = deps
    return graph


def find_cycles(graph: dict) -> list[list[str]]:
    """Every back edge of a depth-first search, as the cycle it closes."""
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_cycle_finder_finds_the_cycle_the_old_layout_had():
    old = {"xcam.cam": {"xcam.methods"}, "xcam.methods": {"xcam.pixel"}, "xcam.pixel": {"xcam.cam"}}
    assert find_cycles(old) == [["xcam.cam", "xcam.methods", "xcam.pixel", "xcam.cam"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_xcam_modules():
    graph = import_graph()
    assert graph["xcam.pipeline"] >= {"xcam.methods", "xcam.maps"}  # the graph is really read
    assert not find_cycles(graph), [" -> ".join(c) for c in find_cycles(graph)]


def test_no_import_cycle_in_the_app_even_through_deferred_imports():
    graph = import_graph(deferred=True)
    # the app is really read, deferred imports included (modelspec builds the demo model on demand)
    assert graph["xcam.app.jobs.explain"] >= {"xcam.app.engines.local", "xcam.app.engines.ray"}
    assert "xcam.app.models.zoo" in graph["xcam.app.models.modelspec"]
    # both engines call the per-batch function, and neither names a job
    for engine in ("xcam.app.engines.local", "xcam.app.engines.ray"):
        assert "xcam.app.engines.batch" in graph[engine]
        assert not any(d.startswith("xcam.app.jobs") for d in graph[engine]), graph[engine]
    assert not find_cycles(graph), [" -> ".join(c) for c in find_cycles(graph)]


def test_the_app_is_in_rooms_each_a_package_with_a_one_line_docstring():
    app = ROOT / "xcam" / "app"
    assert sorted(p.name for p in app.glob("*.py")) == ["__init__.py", "cli.py"]
    rooms = sorted(p.parent for p in app.rglob("__init__.py") if p.parent != app)
    assert {r.name for r in rooms} >= {"jobs", "inputs", "outputs", "models", "engines"}
    for room in rooms:
        doc = ast.get_docstring(ast.parse((room / "__init__.py").read_text()))
        assert doc and "\n" not in doc.strip(), f"{room.relative_to(ROOT)} needs a one-line docstring"
    for path in app.rglob("*.py"):  # every module says what it is
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path.relative_to(ROOT)} has no docstring"


@pytest.mark.parametrize("module", [pytest.param("xcam_torch", marks=pytest.mark.torch),
                                    pytest.param("xcam_tf", marks=pytest.mark.tf)])
def test_adapter_satisfies_the_protocols(module):
    from kits import make_kit

    import xcam

    pytest.importorskip({"xcam_torch": "torch", "xcam_tf": "tensorflow"}[module])
    adapter = importlib.import_module(module)
    assert isinstance(adapter, xcam.Adapter)
    assert adapter.LAYOUT in ("channels_first", "channels_last") and adapter.NAME in ("torch", "tf")
    kit = make_kit(adapter.NAME)
    probe = adapter.probe(kit.model, kit.inputs, "conv2")
    assert isinstance(probe, xcam.Probe)
    # the probe's inputs are the batch, channels first, and its forward gives the model's own logits
    np.testing.assert_allclose(probe.inputs, kit.x_nchw, atol=1e-6)
    np.testing.assert_allclose(probe.predict(kit.x_nchw), kit.predict(kit.x_nchw), atol=1e-5)
    assert adapter.input_shape(kit.model)[0] == 3
    # the randomization callbacks: the same layers in the canonical layout on both frameworks, restored exactly
    assert [(r.name, r.shapes) for r in adapter.parameter_layers(kit.model)] == [
        ("conv1", ((4, 3, 3, 3), (4,))), ("conv2", ((3, 4, 3, 3), (3,))), ("fc", ((2, 3), (2,)))]
    before = kit.predict(kit.x_nchw)
    with adapter.randomized(kit.model, ["fc"]):
        assert not np.array_equal(kit.predict(kit.x_nchw), before)
    np.testing.assert_array_equal(kit.predict(kit.x_nchw), before)


def test_every_public_function_and_class_has_a_docstring():
    missing = []
    for name, _, tree in sources():
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_") \
                    and not ast.get_docstring(node):
                missing.append(f"{name}.{node.name}")
    assert not missing, missing
