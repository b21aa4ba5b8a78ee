"""Imports flow one way: models ← train/generate/evaluate ← cli. A lower layer never imports a
higher one, so the server (later) can depend on the generation interface alone."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "luoxia"
# layer → the luoxia subpackages it must not import
FORBIDDEN = {
    "models": {"train", "generate", "encoders", "evaluate", "cli", "demo", "data"},
    "data": {"models", "train", "generate", "encoders", "evaluate", "cli", "demo"},
    # encoders sit beside generate/train: moderation, the server and retrieval use them, not the reverse
    "encoders": {"train", "generate", "evaluate", "safety", "serve", "cli", "demo"},
    "generate": {"train", "evaluate", "cli", "demo"},
    "evaluate": {"train", "cli", "demo"},
    "train": {"evaluate", "cli", "demo"},
    "safety": {"train", "evaluate", "cli", "demo"},
    # the server sees models only through the generation interface
    "serve": {"models", "cli", "demo"},
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
    for path in (PACKAGE / layer).rglob("*.py"):
        bad = luoxia_imports(path) & FORBIDDEN[layer]
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"
