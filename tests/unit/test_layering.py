"""One-way layers: storage never imports runtime; runtime uses only the public treadle.storage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"storage": "treadle.storage", "runtime": "treadle.runtime"}


def _module_name(path: Path, package_dir: str) -> str:
    """Dotted name of a source file: storage/_codec.py -> treadle.storage._codec."""
    parts = path.relative_to(ROOT / package_dir).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGES[package_dir], *parts))


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of everything ``source`` imports, relative imports resolved.

    ``from a import b`` yields both ``a`` and ``a.b`` (b may be a module); string arguments of
    ``importlib.import_module``/``__import__`` count as imports too.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def _is_runtime(name: str) -> bool:
    return name in ("runtime", "treadle.runtime") or name.startswith(("runtime.", "treadle.runtime."))


def _is_private_storage(name: str) -> bool:
    parts = name.split(".")
    if parts[:2] == ["treadle", "storage"]:
        rest = parts[2:]
    elif parts[:1] == ["storage"]:
        rest = parts[1:]
    else:
        return False
    return bool(rest) and rest[0].startswith("_") and not rest[0].startswith("__")


def _sources(package_dir: str) -> list[Path]:
    files = sorted((ROOT / package_dir).rglob("*.py"))
    assert files, f"no source files under {ROOT / package_dir}"
    return files


def _violations(package_dir: str, rule: object) -> list[str]:
    problems = []
    for path in _sources(package_dir):
        module = _module_name(path, package_dir)
        source = path.read_text(encoding="utf-8")
        for line, name in imported_modules(source, module, path.name == "__init__.py"):
            if rule(name):  # type: ignore[operator]
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return problems


def test_storage_never_imports_runtime() -> None:
    """No module in storage/ imports treadle.runtime (or a bare `runtime`), however spelled."""
    assert _violations("storage", _is_runtime) == []


def test_runtime_imports_only_the_public_storage_package() -> None:
    """runtime/ modules import `treadle.storage`, never a private `treadle.storage._x` module."""
    assert _violations("runtime", _is_private_storage) == []


def test_runtime_uses_the_namespaced_storage_package() -> None:
    """runtime/ never imports a bare top-level `storage` (that only exists in the source tree)."""
    assert _violations("runtime", lambda name: name == "storage" or name.startswith("storage.")) == []


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import treadle.runtime", "treadle.storage._x", True),
        ("from treadle.runtime import Runtime", "treadle.storage._x", True),
        ("from treadle import runtime", "treadle.storage._x", True),
        ("from .. import runtime", "treadle.storage._x", True),
        ("from ..runtime._errors import ActivityError", "treadle.storage._x", True),
        ("import runtime._driver", "treadle.storage._x", True),
        ("import importlib\nimportlib.import_module('treadle.runtime')", "treadle.storage._x", True),
        ("def f():\n    from treadle.runtime import x", "treadle.storage._x", True),
        ("from ._codec import pack", "treadle.storage._x", False),
        ("from . import _codec", "treadle.storage._x", False),
        ("import msgpack", "treadle.storage._x", False),
    ],
)
def test_detector_finds_runtime_imports(source: str, module: str, expected: bool) -> None:
    """The AST walk sees every spelling of an import (absolute, relative, nested, dynamic)."""
    assert any(_is_runtime(name) for _, name in imported_modules(source, module)) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from treadle.storage._codec import encode", True),
        ("import treadle.storage._lmdb", True),
        ("from treadle.storage import _codec", True),
        ("from ..storage._keys import run_key", True),
        ("from treadle.storage import encode, LmdbStore", False),
        ("import treadle.storage", False),
        ("from ._errors import ActivityError", False),
    ],
)
def test_detector_finds_private_storage_imports(source: str, expected: bool) -> None:
    """Private storage modules are found whether imported by path, by name or relatively."""
    names = [name for _, name in imported_modules(source, "treadle.runtime._x")]
    assert any(_is_private_storage(name) for name in names) is expected
