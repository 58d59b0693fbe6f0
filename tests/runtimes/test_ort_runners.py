"""ORT runners: provider options, TF32 defaults, the IOBinding path (on CPU here), clean unavailability."""
import numpy as np
import pytest

from lstm_onnx.bench.models import export_form, random_checkpoint
from lstm_onnx.runtimes.base import RunnerError, RunnerUnavailable
from lstm_onnx.runtimes.ort import (
    OnnxRuntimeBoundRunner,
    OnnxRuntimeRunner,
    available_providers,
    provider_chain,
    provider_chain_tf32,
)


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    return export_form(random_checkpoint(4, 8), "native", tmp_path_factory.mktemp("ort") / "native.onnx")


def feeds(batch=3, seq=6):
    return {"x": np.random.default_rng(0).standard_normal((batch, seq, 4)).astype(np.float32)}


def test_iobinding_matches_plain_session(native):
    with OnnxRuntimeRunner(native, "cpu") as plain:
        expected = plain.infer(feeds())
    with OnnxRuntimeBoundRunner(native, "cpu") as bound:
        got = bound.infer(feeds())
        # same shapes again: the bound buffers are reused, and new values must flow through
        other = feeds()
        other["x"] = other["x"][::-1].copy()
        again = bound.infer(other)
    np.testing.assert_array_equal(got["y"], expected["y"])
    assert not np.allclose(again["y"], got["y"])  # a stale buffer would repeat the first result
    with OnnxRuntimeRunner(native, "cpu") as plain:
        np.testing.assert_array_equal(again["y"], plain.infer(other)["y"])


def test_iobinding_rebinds_on_new_shapes(native):
    with OnnxRuntimeBoundRunner(native, "cpu") as bound:
        assert bound.infer(feeds(2, 4))["y"].shape == (2, 4)
        assert bound.infer(feeds(5, 7))["y"].shape == (5, 4)


def test_cuda_graph_needs_cuda(native):
    with pytest.raises(RunnerError, match="cuda"):
        OnnxRuntimeBoundRunner(native, "cpu", cuda_graph=True)


def test_provider_options_and_threads_reach_the_session(native, monkeypatch):
    import onnxruntime as ort

    seen = {}
    real = ort.InferenceSession

    def recording(model, sess_options=None, providers=None, **kw):
        seen.update(providers=providers, threads=sess_options.intra_op_num_threads)
        return real(model, sess_options=sess_options, providers=providers, **kw)

    # CPU EP does not echo its options through get_provider_options(); record what the runner passes
    monkeypatch.setattr(ort, "InferenceSession", recording)
    with OnnxRuntimeRunner(native, "cpu", provider_options={"use_arena": 0}, threads=1):
        pass
    assert seen == {"providers": [("CPUExecutionProvider", {"use_arena": "0"})], "threads": 1}


def test_tf32_off_unless_asked():
    assert not provider_chain_tf32({}, allow_tf32=False)
    assert provider_chain_tf32({}, allow_tf32=True)
    assert not provider_chain_tf32({"use_tf32": "0"}, allow_tf32=True)  # an explicit option wins


@pytest.mark.skipif("cuda" in available_providers(), reason="this build has CUDA")
def test_missing_provider_is_unavailable_with_install_hint(native):
    with pytest.raises(RunnerUnavailable, match="pip install onnxruntime-gpu"):
        provider_chain("cuda", {}, False)
    with pytest.raises(RunnerUnavailable, match="tensorrt|TensorRT"):
        OnnxRuntimeRunner(native, "tensorrt").activate()


def test_unknown_provider_is_an_error_not_a_skip():
    with pytest.raises(RunnerError) as info:
        provider_chain("warp-drive", {}, False)
    assert not isinstance(info.value, RunnerUnavailable)
