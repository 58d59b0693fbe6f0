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


@pytest.fixture(scope="module")
def grpc_live(serve_model):
    """Our server over HTTP and gRPC, serving the stateful export with lengths as "lstm", the name tritonclient's
    examples and tests use."""
    from lstm_onnx.serving.settings import ServeSettings
    from lstm_onnx.serving.tritonserver import free_port
    from tests.serving.harness_tools import Live

    settings = ServeSettings(model=str(serve_model), model_name="lstm", grpc_port=free_port(), max_wait_ms=5.0,
                             max_items=8, max_seq_len=60, max_sessions=16)
    with Live(settings) as server:
        yield server
    assert not server.log.tracebacks(), server.log.tracebacks()
