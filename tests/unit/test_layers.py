"""Imports go one way only: each layer may import the layers below it and nothing else.

Every ``import`` and ``from … import`` in every module is read from its syntax tree, also those
inside functions and under ``TYPE_CHECKING``, so a lazy import cannot cross a layer unseen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# layer -> the prefixes of our own modules it may import (besides itself)
OURS = ("worker", "tasks", "config", "tests", "bench", "examples")
RULES: dict[str, tuple[str, ...]] = {
    "worker.comfyui": ("worker.comfyui",),
    "worker.simulator": ("worker.simulator", "worker.comfyui.protocol"),
    "worker.fleet": ("worker.fleet", "worker.comfyui"),
    "config": ("config", "worker.comfyui", "worker.fleet"),
    "tasks": ("tasks", "config", "worker.fleet", "worker.comfyui"),
    "worker.app": ("worker.app", "tasks", "config", "worker.fleet", "worker.comfyui", "worker.simulator"),
}
# third-party frameworks only some layers may import
CELERY = ("celery", "kombu", "flower")
MAY_IMPORT_CELERY = ("tasks", "worker.app")


def _layer(module: str) -> str | None:
    matches = [layer for layer in RULES if module == layer or module.startswith(layer + ".")]
    return max(matches, key=len) if matches else None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # `from worker.comfyui import protocol` names the submodule worker.comfyui.protocol
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _allowed(layer: str, imported: str) -> bool:
    return any(imported == prefix or imported.startswith(prefix + ".") for prefix in RULES[layer])


def _violations(path: Path) -> list[str]:
    module = _module_name(path)
    layer = _layer(module)
    if layer is None:
        return []
    problems = []
    for line, imported in _imports(path):
        top = imported.split(".")[0]
        if (top in CELERY and layer not in MAY_IMPORT_CELERY) or (
            top in OURS and not _allowed(layer, imported) and _module_exists(imported)
        ):
            problems.append(f"{path.relative_to(ROOT)}:{line}: layer {layer} imports {imported}")
    return problems


def _module_exists(dotted: str) -> bool:
    """`from worker.comfyui import protocol` adds `worker.comfyui.protocol`; a name that is not a
    module (`from worker.comfyui.errors import ComfyUIError`) is checked as its parent module."""
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _sources() -> list[Path]:
    return sorted(p for top in ("worker", "tasks", "config") for p in (ROOT / top).rglob("*.py"))


def test_every_module_belongs_to_a_layer() -> None:
    orphans = [str(p.relative_to(ROOT)) for p in _sources() if _layer(_module_name(p)) is None]
    # the two package roots and the CLI entry point are glue: checked by name below
    assert sorted(orphans) == ["worker/__init__.py", "worker/__main__.py"]


def test_no_import_crosses_a_layer_the_wrong_way() -> None:
    problems = [problem for path in _sources() for problem in _violations(path)]
    assert problems == []


def test_entry_point_imports_only_the_app_layer() -> None:
    imported = {name for _, name in _imports(ROOT / "worker" / "__main__.py")}
    ours = {name for name in imported if name.split(".")[0] in OURS}
    assert ours and all(name.startswith("worker.app") for name in ours)


@pytest.mark.parametrize(
    ("layer", "source", "expected"),
    [
        ("worker.comfyui", "from tasks.app import app\n", "imports tasks.app"),
        ("worker.comfyui", "def f():\n    import celery\n", "imports celery"),
        ("worker.fleet", "from config.settings import Settings\n", "imports config.settings"),
        ("worker.simulator", "from worker.comfyui.errors import ComfyUIError\n", "imports worker.comfyui.errors"),
        ("tasks", "from worker.app.cli import main\n", "imports worker.app.cli"),
        ("config", "from worker.comfyui import protocol\n", None),
    ],
)
def test_the_checker_catches_a_crossing(tmp_path: Path, layer: str, source: str, expected: str | None) -> None:
    """The rule itself can fail: a module planted in each layer with a forbidden import."""
    path = ROOT.joinpath(*layer.split(".")) / "_planted_for_test.py"
    path.write_text(source)
    try:
        problems = _violations(path)
    finally:
        path.unlink()
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].endswith(expected)
