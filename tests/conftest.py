"""Suite-wide settings: hypothesis profiles (seeded and short for `make test`, long for `make fuzz`) and the
harness figures at the end of the run."""
import os

import pytest
from hypothesis import HealthCheck, settings

from tests.harness import TALLY
from tests.placement_fakes import move_lstm_nodes

# Training measures which kernel is faster on first use per machine and shape (pipeline/kernel_choice.py);
# the suite pins the compiled one instead, so no test pays a measurement or depends on its outcome.
os.environ.setdefault("LSTM_PIPELINE_KERNEL", "compiled")

settings.register_profile("ci", max_examples=40, derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=2000, derandomize=False, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_terminal_summary(terminalreporter):
    lines = TALLY.lines()
    if lines:
        terminalreporter.section("bad-input and fault harness")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def lstm_elsewhere(monkeypatch):
    """LSTM nodes reported on another provider than requested (on CPU nothing lands elsewhere by itself)."""
    move_lstm_nodes(monkeypatch)


@pytest.fixture(scope="session")
def demo_checkpoint(tmp_path_factory):
    """The demo task's model, trained as `make train` does (int8 tests: its activations are what saturate)."""
    from lstm_onnx.pipeline.config import RunConfig
    from lstm_onnx.pipeline.train import train

    config = RunConfig()
    config.train.threads = 1
    return train(config, tmp_path_factory.mktemp("demo") / "model.pt", progress=False, log=lambda *_: None)
