"""The built wheel: both packages whole, with their PEP 561 type-hint markers."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_every_module_and_the_py_typed_markers(tmp_path):
    pytest.importorskip("setuptools")
    source = tmp_path / "source"  # a copy: no build/ directory of an earlier build to reuse
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for package in ("bayesym", "curvature"):
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("bayesym-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"bayesym/py.typed", "curvature/py.typed"} <= names
    sources = {
        p.relative_to(ROOT).as_posix()
        for package in ("bayesym", "curvature")
        for p in (ROOT / package).rglob("*.py")
    }
    assert sources <= names, sorted(sources - names)[:5]
