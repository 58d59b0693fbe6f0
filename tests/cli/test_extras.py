"""require(): a missing optional module is one line naming its extra; a broken install is not disguised as one."""
import sys

import click
import pytest

from lstm_onnx.cli.extras import require


def test_present_module_passes():
    require("train", "torch", "tqdm")


def test_missing_module_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ModuleNotFoundError
    with pytest.raises(click.ClickException) as exc:
        require("report", "matplotlib")
    assert exc.value.message == "`lstm-pipeline report` needs matplotlib: pip install 'lstm-onnx-pipeline[plots]'"


def test_missing_dependency_of_an_installed_module_propagates(monkeypatch):
    def broken_import(name, *args, **kwargs):
        raise ModuleNotFoundError(f"No module named '{name}._C'", name=f"{name}._C")

    monkeypatch.setattr("importlib.import_module", broken_import)
    with pytest.raises(ModuleNotFoundError):
        require("train", "torch")
