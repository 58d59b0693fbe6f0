"""The import contract: each source folder imports only the layers below it, no module cycles, and the deploy
layers import no torch when they load. Read from the source as text (AST), so it holds for every module,
imported by a test or not."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "lstm_onnx"
# layer -> the layers it may import. Deploy layers (core, runtimes, serving) never reach training or export.
ALLOWED = {
    "core": set(),
    "pipeline": {"core"},
    "runtimes": {"core"},
    "exporters": {"core", "pipeline", "runtimes"},
    "serving": {"core", "runtimes"},
    "bench": {"core", "pipeline", "runtimes", "exporters"},
    "cli": {"core", "pipeline", "runtimes", "exporters", "serving", "bench"},
    "api": {"core", "pipeline", "runtimes", "exporters"},  # the package lstm_onnx itself: fit, export, Predictor
}
# What a deploy install lacks: these may be imported inside functions only, in the layers that a deploy runs.
TRAIN_ONLY = {"torch", "tqdm"}
DEPLOY_LAYERS = {"core", "runtimes", "serving", "cli", "api"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([NAMESPACE] + parts)


def imports_of(tree: ast.Module):
    """(imported module, at module level?) for every absolute import in the file."""
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            yield name, id(node) in top


def source_modules() -> dict[str, list[tuple[str, bool]]]:
    out = {}
    for layer in ALLOWED:
        for path in sorted((ROOT / layer).rglob("*.py")):
            out[module_name(path)] = list(imports_of(ast.parse(path.read_text(), str(path))))
    return out


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == NAMESPACE and parts[1] in ALLOWED else None


def backward_imports(modules) -> list[str]:
    bad = []
    for mod, imports in modules.items():
        src = layer_of(mod)
        for name, _ in imports:
            dst = layer_of(name)
            if dst and dst != src and dst not in ALLOWED[src]:
                bad.append(f"{mod} imports {name} ({src} may import only {sorted(ALLOWED[src]) or 'nothing'})")
        for bare in ("pipeline", "exporters", "runtimes", "serving", "bench", "cli", "core"):
            if any(n == bare or n.startswith(bare + ".") for n, _ in imports):
                bad.append(f"{mod} imports the bare name {bare!r}; use {NAMESPACE}.{bare}")
    return sorted(set(bad))


def module_cycles(modules) -> list[list[str]]:
    """Strongly connected groups of two or more of our modules (function-level imports count too)."""
    edges = {m: {n for n, _ in imps if n in modules and n != m} for m, imps in modules.items()}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def train_imports_at_load(modules) -> list[str]:
    return sorted(f"{mod} imports {name} at module level" for mod, imps in modules.items()
                  if layer_of(mod) in DEPLOY_LAYERS for name, top in imps if top and name.split(".")[0] in TRAIN_ONLY)


@pytest.fixture(scope="module")
def modules():
    return source_modules()


def test_every_source_folder_is_a_layer():
    folders = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert folders == set(ALLOWED)


def test_no_backward_imports(modules):
    assert backward_imports(modules) == []


def test_no_module_cycles(modules):
    assert module_cycles(modules) == []


def test_deploy_layers_load_without_torch(modules):
    assert train_imports_at_load(modules) == []


def test_the_checks_can_fail():
    """Mutations: a backward edge, a bare top-level name, a two-module cycle, torch at load in a deploy layer."""
    fake = {
        "lstm_onnx.runtimes.a": [("lstm_onnx.pipeline.model", False), ("torch", True)],
        "lstm_onnx.runtimes.b": [("lstm_onnx.runtimes.c", True)],
        "lstm_onnx.runtimes.c": [("lstm_onnx.runtimes.b", False)],
        "lstm_onnx.serving.d": [("pipeline.model", True)],
    }
    assert [b.split(" (")[0] for b in backward_imports(fake)] == [
        "lstm_onnx.runtimes.a imports lstm_onnx.pipeline.model",
        "lstm_onnx.serving.d imports the bare name 'pipeline'; use lstm_onnx.pipeline"]
    assert module_cycles(fake) == [["lstm_onnx.runtimes.b", "lstm_onnx.runtimes.c"]]
    assert train_imports_at_load(fake) == ["lstm_onnx.runtimes.a imports torch at module level"]
