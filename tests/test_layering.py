"""The package's shape, as docs/ARCHITECTURE.md draws it: every module belongs to a layer, a layer
imports only the layers it is allowed to (an allow-list, so a new package must be placed), the module
graph has no cycle, and function-local imports of Luoxia's own modules are the listed few.

Imports are read from the source (module level and inside functions alike), so a cycle cannot hide
behind an import inside a function.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "luoxia"

# Layer → the layers it may import (besides itself). Lowest first; see docs/ARCHITECTURE.md. "root" is
# ``luoxia/__init__.py`` (the version and a lazy ``luoxia.load``).
FOUNDATION = {"root", "errors", "config", "runtime", "checkpoint", "runs", "database"}
ALLOWED: dict[str, set[str]] = {
    "root": set(),
    "errors": set(),
    "config": {"errors"},
    "runtime": {"errors"},
    "database": {"errors"},
    "checkpoint": {"errors", "config"},
    "runs": {"errors", "config", "checkpoint"},
    "models": FOUNDATION,
    "data": FOUNDATION,
    "encoders": FOUNDATION | {"models", "data"},
    "generate": FOUNDATION | {"models", "data"},
    # training samples text as it goes (generate) and trains heads on sentence vectors (encoders)
    "train": FOUNDATION | {"models", "data", "generate", "encoders"},
    # task → (recipe, train function, loader): above both halves it points at
    "registry": FOUNDATION | {"models", "data", "generate", "train", "encoders"},
    "evaluate": FOUNDATION | {"models", "data", "generate", "encoders", "registry"},
    "safety": FOUNDATION | {"models", "data", "generate", "encoders"},
    # beside safety: documents in, ranked hits out, through the encoders
    "retrieval": FOUNDATION | {"data", "encoders"},
    # applications compose generators (loaded through the registry), encoders, retrieval and the guard
    "apps": FOUNDATION | {"data", "encoders", "generate", "registry", "evaluate", "safety", "retrieval"},
    # the server never imports a model file: it sees models through the generation interface
    "serve": FOUNDATION | {"data", "encoders", "generate", "registry", "evaluate", "safety", "retrieval", "apps"},
    "cli": FOUNDATION | {"models", "data", "encoders", "generate", "train", "registry", "evaluate", "safety",
                         "retrieval", "apps", "serve"},
}
# Function-local imports of Luoxia modules that are allowed, with the reason: (importer, imported).
LOCAL_IMPORTS: dict[tuple[str, str], str] = {
    ("luoxia", "luoxia.registry"): "``import luoxia`` stays instant; ``luoxia.load`` pulls in torch when called",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    name = parts[1]
    return "cli" if name.startswith("cli") or name in {"demo", "export"} else name


def imports(path: Path) -> Iterator[tuple[str, bool]]:
    """(imported luoxia module, inside a function?) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "luoxia":
            # ``from luoxia.pkg import sub`` imports the submodule; ``from luoxia.pkg import Name`` the package
            base = PACKAGE.parent / node.module.replace(".", "/")
            subs = {a.name for a in node.names if (base / f"{a.name}.py").is_file() or (base / a.name).is_dir()}
            names = [f"{node.module}.{s}" for s in sorted(subs)]
            if len(subs) < len(node.names):
                names.append(node.module)
            yield from ((name, id(node) in local) for name in names)
        elif isinstance(node, ast.Import):
            yield from ((a.name, id(node) in local) for a in node.names if a.name.split(".")[0] == "luoxia")


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        targets = set()
        for target, _ in imports(path):
            while target not in modules and "." in target:  # ``luoxia.pkg.Name`` → ``luoxia.pkg``
                target = target.rsplit(".", 1)[0]
            if target != name:
                targets.add(target)
        edges[name] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan): the import cycles."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    unknown = sorted({layer_of(m) for m in graph()} - set(ALLOWED))
    assert not unknown, f"modules outside every layer (place them in ALLOWED and docs/ARCHITECTURE.md): {unknown}"


def test_layers_import_only_what_they_are_allowed():
    wrong = []
    for module, targets in graph().items():
        layer = layer_of(module)
        for target in targets:
            other = layer_of(target)
            listed = (module, target) in LOCAL_IMPORTS  # a reviewed exception, imported when called
            if other != layer and other not in ALLOWED.get(layer, set()) and not listed:
                wrong.append(f"{module} → {target} ({layer} may not import {other})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" ↔ ".join(c) for c in found)


def test_function_local_imports_are_the_listed_few():
    found = set()
    for path in PACKAGE.rglob("*.py"):
        found |= {(module_name(path), target) for target, local in imports(path) if local}
    unlisted = sorted(found - set(LOCAL_IMPORTS))
    assert not unlisted, "function-local imports of luoxia modules (import at the top, or list with a reason):\n" + \
        "\n".join(f"{a} imports {b}" for a, b in unlisted)
    assert not set(LOCAL_IMPORTS) - found, "LOCAL_IMPORTS lists imports that no longer exist"


def test_the_checker_finds_cycles_and_upward_imports():
    """The test's own machinery: a two-module cycle is found, an allowed chain is not a cycle."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert layer_of("luoxia.models.gpt") == "models" and layer_of("luoxia.cli_serve") == "cli"
    assert "serve" not in ALLOWED["generate"] and "models" not in ALLOWED["serve"]
