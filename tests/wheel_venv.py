"""A fresh venv with the project's wheel and the dependencies it declares, made offline.

pip installs the wheel (--no-deps, --no-index). Each dependency the wheel's metadata asks for (for the
requested extras, then theirs, recursively) is linked in from the distribution installed in this interpreter's
environment, file by file from its RECORD: the versions the suite runs against, no download, and nothing
that the wheel does not declare (a dependency missing from pyproject.toml is missing there too).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DIST = "lstm-onnx-pipeline"
# What the wheel is built from (pyproject.toml's package-dir folders, the readme): copied to a temporary
# tree, since setuptools writes build/ beside the sources and a stale build/lib would leak into the wheel.
SOURCES = ("pyproject.toml", "README.md", "api", "core", "pipeline", "exporters", "runtimes", "serving", "bench", "cli")


def build_wheel(out: Path) -> Path:
    src = out / "src"
    src.mkdir(parents=True)
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(out / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (out / "dist").glob("*.whl")
    return wheel


def wheel_requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        meta = zf.read(name).decode()
    return [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]


def _applies(req: Requirement, extras: set[str]) -> bool:
    return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""})


def dependency_closure(requirements: list[str], extras: set[str], own: str) -> list[metadata.Distribution]:
    """The installed distributions that `requirements` (with `extras`) need, transitively. A requirement of
    `own` (an extra such as [full] naming other extras) adds those extras' requirements instead."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset]] = set()
    todo = [(Requirement(r), frozenset(extras)) for r in requirements]
    while todo:
        req, wanted = todo.pop()
        name = canonicalize_name(req.name)
        if not _applies(req, wanted) or (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        if name == own:
            todo += [(Requirement(r), frozenset(req.extras)) for r in requirements]
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise AssertionError(f"{req} is declared but not installed here: reinstall the venv (make install)")
        assert req.specifier.contains(dist.version, prereleases=True), f"{req} declared, {dist.version} installed"
        found[name] = dist
        todo += [(Requirement(r), frozenset(req.extras)) for r in dist.requires or ()]
    return list(found.values())


def _link_files(dist: metadata.Distribution, site: Path) -> None:
    assert dist.files is not None, f"{dist.metadata['Name']} has no RECORD"
    for rel in dist.files:
        if rel.parts[0] == "..":  # console scripts in bin/: their shebang names the other interpreter
            continue
        src, dst = Path(dist.locate_file(rel)), site / rel
        if not src.is_file():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:  # another filesystem
            shutil.copy2(src, dst)


def make_venv(path: Path, wheel: Path, extras: set[str] = frozenset()) -> Path:
    """A venv at `path` with `wheel` and its dependencies for `extras`; returns its bin/ folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    bindir = path / "bin"
    site = Path(subprocess.check_output(
        [str(bindir / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True).strip())
    for dist in dependency_closure(wheel_requirements(wheel), set(extras), own=canonicalize_name(DIST)):
        _link_files(dist, site)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(bindir / "python"), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True)
    return bindir


def clean_env() -> dict[str, str]:
    """This process's environment without what would let the venv see this checkout or this venv."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}

