"""The layers are a contract: import-linter's contracts in pyproject.toml hold, they would catch a
wrong-way or cyclic import (lazy ones included), and the light packages load without torch/ray."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
LIGHT = ("tiling", "reports", "storage", "labels")  # drivers and report readers have no torch


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the project at ``root`` (its pyproject.toml), in a fresh interpreter."""
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=root, env={"PYTHONPATH": str(root), "PATH": ""},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_import_contracts_are_kept():
    res = lint_imports(REPO)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert f"{len(CONFIG['contracts'])} kept, 0 broken" in res.stdout


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """The packages and pyproject.toml, copied so a test can add a bad import."""
    for package in CONFIG["root_packages"]:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    return tmp_path


def _add_line(path: Path, line: str) -> None:
    path.write_text(path.read_text() + "\n" + line + "\n")


@pytest.mark.parametrize(
    "module,line,broken",
    [
        ("tiling/grid.py", "from jobs import cli", "One-way layers"),
        (
            "models/nets.py",
            "import tiling.heatmap",
            "models/ takes from tiling/ only the box decoding",
        ),
        ("reports/truth.py", "from tiling.grid import Region", "reports/ takes from tiling/ only"),
        ("reports/truth.py", "from models import bundle", "One-way layers"),
        # A cycle hidden by a lazy import: tiling.read imports tiling.bands at the top.
        ("tiling/bands.py", "def _late():\n    from tiling import read", "No import cycles"),
    ],
)
def test_contracts_catch_a_bad_import(project_copy, module, line, broken):
    _add_line(project_copy / module, line)
    res = lint_imports(project_copy)
    assert res.returncode == 1, res.stdout[-4000:] + res.stderr[-2000:]
    assert broken in res.stdout.split("Broken contracts")[1], res.stdout[-4000:]


def test_light_packages_import_without_torch_or_ray():
    code = f"""
import importlib, pkgutil, sys
for package in {LIGHT!r}:
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        importlib.import_module(info.name)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "ray"))
print(len(sys.modules), heavy[:5])
sys.exit(1 if heavy else 0)
"""
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": ""},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
