import pytest

from tests import models


@pytest.fixture(scope="session")
def ckpt():
    return models.checkpoint()


@pytest.fixture(scope="session")
def serve_model(ckpt, tmp_path_factory):
    """Exported with --stateful --lengths: what `make serve` serves."""
    return models.export(ckpt, tmp_path_factory.mktemp("m") / "serve.onnx", stateful=True, lengths=True)


@pytest.fixture(scope="session")
def stateful_model(ckpt, tmp_path_factory):
    """--stateful without lengths: the server groups by length instead of padding."""
    return models.export(ckpt, tmp_path_factory.mktemp("m") / "stateful.onnx", stateful=True)
