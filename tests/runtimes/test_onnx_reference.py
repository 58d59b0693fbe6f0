"""runtimes/onnx_reference: whether the installed onnx's LSTM applies sequence_lens is measured (a small model
against the numpy equations), and the runner refuses a model with sequence_lens exactly when it does not."""
import numpy as np
import onnxruntime as ort
import pytest

from lstm_onnx.exporters.export import ExportOptions, export_checkpoint
from lstm_onnx.runtimes import onnx_reference
from lstm_onnx.runtimes.base import RunnerRefused
from lstm_onnx.runtimes.compare import Tolerances, compare_outputs
from lstm_onnx.runtimes.onnx_reference import OnnxReferenceRunner, honours_lengths, lengths_probe
from lstm_onnx.runtimes.verify import model_feeds
from tests.helpers import make_checkpoint


def ort_run(model, feeds):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_the_probe_tells_a_kernel_that_masks_from_one_that_ignores_the_lengths():
    model, feeds, expected = lengths_probe()
    assert feeds["lengths"].min() < feeds["x"].shape[0]
    assert not np.allclose(expected["y"][-1], 0)  # the full-length item runs to the end...
    assert np.all(expected["y"][2:, :, 1] == 0)  # ...the one of length 2 is zero after it
    assert honours_lengths(ort_run)  # ORT's CPU LSTM applies sequence_lens
    full = lambda m, f: ort_run(m, dict(f, lengths=np.full_like(f["lengths"], f["x"].shape[0])))  # noqa: E731
    assert not honours_lengths(full)  # the mutation: a kernel that ignores them


@pytest.fixture
def lengths_model(tmp_path):
    path = tmp_path / "lens.onnx"
    export_checkpoint(make_checkpoint(), path, ExportOptions(lengths=True))
    return path


@pytest.mark.parametrize("honoured", [False, True])
def test_the_runner_refuses_sequence_lens_exactly_when_the_probe_says_it_is_ignored(lengths_model, monkeypatch,
                                                                                    honoured):
    monkeypatch.setattr(onnx_reference, "sequence_lens_honoured", lambda: honoured)
    runner = OnnxReferenceRunner(lengths_model)
    if not honoured:
        with pytest.raises(RunnerRefused, match="ignores lstm0: sequence_lens"):
            runner.activate()
        return
    import onnx

    feeds = model_feeds(onnx.load(lengths_model), 4, 9, seed=1)
    with runner:
        got = runner.infer(feeds)
    assert list(got) == ["y"]


def test_the_installed_onnx_is_measured_once(lengths_model):
    """Whatever this onnx does: the runner follows the probe, and a run it allows is right."""
    import onnx

    onnx_reference.sequence_lens_honoured.cache_clear()
    honoured = onnx_reference.sequence_lens_honoured()
    assert onnx_reference.sequence_lens_honoured.cache_info().misses == 1
    assert onnx_reference.sequence_lens_honoured() is honoured
    assert onnx_reference.sequence_lens_honoured.cache_info().hits == 1
    feeds = model_feeds(onnx.load(lengths_model), 4, 9, seed=1)
    raw = OnnxReferenceRunner(lengths_model, refuse_ignored=False)
    with raw:
        got = raw.infer(feeds)
    expected = dict(zip(["y"], ort_run(onnx.load(lengths_model), feeds)))
    assert all(r.passed for r in compare_outputs("onnx-reference", got, expected, Tolerances())) == honoured
