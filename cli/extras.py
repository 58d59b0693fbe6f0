"""A command that needs an optional extra says which one, in one line, before any of its imports can fail."""
from __future__ import annotations

import importlib

import click

DIST = "lstm-onnx-pipeline"
# The module a command imports -> the extra that installs it (pyproject.toml's optional-dependencies).
EXTRA_OF = {"torch": "train", "tqdm": "train", "tomli_w": "train",  # tomli_w: train --csv writes its config
            "matplotlib": "plots", "fastapi": "serve", "uvicorn": "serve"}


def install_hint(module: str) -> str:
    return f"pip install '{DIST}[{EXTRA_OF[module]}]'"


def require(command: str, *modules: str) -> None:
    """Import each module, or stop `lstm-pipeline COMMAND` with the pip line that installs it."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # installed, but something it imports is missing: not ours to name
                raise
            raise click.ClickException(f"`lstm-pipeline {command}` needs {module}: {install_hint(module)}") from None
