"""Tests mirror the packages: ``pkg/sub/mod.py`` has its tests in ``tests/pkg/sub/test_mod.py``.

Package ``__init__`` and ``__main__`` modules and the generated protobuf code are left
out: an ``__init__`` is tested through what it defines (``tests/pkg/test_sub.py`` where
it defines much), a ``__main__`` through the command line.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "proto", "frontend", "model_container", "train", "deploy", "bench", "cli")
LEFT_OUT = {"__init__.py", "__main__.py"}


def production_modules() -> list[Path]:
    """Every module of the packages that needs a test file of its own, relative to ROOT."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name in LEFT_OUT or path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            found.append(path.relative_to(ROOT))
    return found


def test_the_packages_have_modules():
    assert {p.parts[0] for p in production_modules()} == set(PACKAGES)


def test_every_module_has_its_own_test_file():
    missing = [
        f"{module} (tests/{module.with_name('test_' + module.name)})"
        for module in production_modules()
        if not (ROOT / "tests" / module.with_name("test_" + module.name)).is_file()
    ]
    assert not missing, "modules without a test file of their own: " + ", ".join(missing)


def test_test_folders_are_packages():
    folders = {p.parent for p in (ROOT / "tests").rglob("test_*.py")}
    assert [f for f in sorted(folders) if not (f / "__init__.py").is_file()] == []
