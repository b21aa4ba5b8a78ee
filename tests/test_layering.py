"""Imports flow one way: runs ← models/data ← train/generate ← registry ← evaluate/safety ← serve ←
cli. A lower layer never imports a higher one, so the server can depend on the generation interface
and the registry alone."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "luoxia"
# layer (a subpackage, or a top-level module) → the luoxia modules it must not import
COMMANDS = {"cli", "cli_demo", "cli_safety", "cli_serve", "export"}
FORBIDDEN = {
    # the run-directory layout sits at the bottom, beside config and checkpoint
    "runs": {"models", "data", "train", "generate", "evaluate", "safety", "serve", "registry", *COMMANDS},
    "models": {"train", "generate", "evaluate", "data", "safety", "serve", "registry", *COMMANDS},
    # data never imports safety: PII masking during prepare is passed in as a callable
    "data": {"models", "train", "generate", "evaluate", "safety", "serve", "registry", *COMMANDS},
    "generate": {"train", "evaluate", "safety", "serve", "registry", *COMMANDS},
    "train": {"evaluate", "safety", "serve", "registry", *COMMANDS},
    # the registry points at train and generate; everything above looks families up in it
    "registry": {"evaluate", "safety", "serve", *COMMANDS},
    "evaluate": {"train", "serve", *COMMANDS},
    "safety": {"train", "evaluate", "serve", *COMMANDS},
    # the server sees models only through the generation interface and the registry
    "serve": {"models", "train", *COMMANDS},
}


def luoxia_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("luoxia."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("luoxia.")}
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_flow_one_way(layer: str):
    module = PACKAGE / f"{layer}.py"
    paths = [module] if module.is_file() else list((PACKAGE / layer).rglob("*.py"))
    assert paths, f"no module or package named {layer}"
    for path in paths:
        bad = luoxia_imports(path) & FORBIDDEN[layer]
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"
