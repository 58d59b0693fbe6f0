"""The harness catches OpenVINO dropping the peepholes of a native LSTM, and passes the other forms on it."""
import numpy as np
import pytest

pytest.importorskip("openvino")

from lstm_onnx.bench.models import export_form, random_checkpoint  # noqa: E402
from lstm_onnx.exporters.export import FORMS  # noqa: E402
from lstm_onnx.runtimes.compare import Tolerances, compare_outputs  # noqa: E402
from lstm_onnx.runtimes.numpy_ref import NumpyRunner  # noqa: E402
from lstm_onnx.runtimes.openvino import OpenVINORunner  # noqa: E402
from lstm_onnx.runtimes.verify import VerifyOptions, verify_model  # noqa: E402

BATCH, SEQ = 4, 23


@pytest.fixture(scope="module")
def ckpt():
    ckpt = random_checkpoint(6, 16, seed=3)
    # Large peepholes make the effect of dropping them unmistakable (default init is U(-1/4, 1/4)).
    for k, v in ckpt.state_dict.items():
        if "peephole" in k:
            v.mul_(4.0)
    return ckpt


@pytest.fixture(scope="module")
def native(ckpt, tmp_path_factory):
    return export_form(ckpt, "native", tmp_path_factory.mktemp("ov") / "native.onnx", stateful=True)


def zero_peepholes(state_dict):
    return {k: (v * 0 if "peephole" in k else v) for k, v in state_dict.items()}


def test_verify_catches_openvino_on_native_peepholes(native):
    report = verify_model(native, options=VerifyOptions(runners=("openvino-cpu",), batch=BATCH, seq=SEQ))
    assert not report.passed
    ov_rows = [r for r in report.parity.rows if r.runner == "openvino-cpu"]
    assert {r.output for r in ov_rows} == {"y", "hn", "cn"} and not any(r.passed for r in ov_rows)
    assert any("openvino-cpu" in w and "likely dropped P" in w for w in report.parity.warnings)


def test_openvino_matches_the_numpy_reference_with_p_zeroed(ckpt, native):
    """Independent of the harness's own diagnosis: float64 numpy from the equations, P = 0."""
    feeds = {"x": np.random.default_rng(1).standard_normal((BATCH, SEQ, 6)).astype(np.float32),
             "h0": np.random.default_rng(2).standard_normal((1, BATCH, 16)).astype(np.float32),
             "c0": np.random.default_rng(3).standard_normal((1, BATCH, 16)).astype(np.float32)}
    with OpenVINORunner(native) as ov:
        got = ov.infer(feeds)
    names = ["x", "h0", "c0"]
    with NumpyRunner(zero_peepholes(ckpt.state_dict), ckpt.model_config, names) as without_p:
        expected_without_p = without_p.infer(feeds)
    with NumpyRunner(ckpt.state_dict, ckpt.model_config, names) as with_p:
        expected_with_p = with_p.infer(feeds)
    tol = Tolerances()
    assert all(r.passed for r in compare_outputs("ov", got, expected_without_p, tol))
    # the mutation: against the true math (with P) the same outputs fail
    assert not any(r.passed for r in compare_outputs("ov", got, expected_with_p, tol))


@pytest.mark.parametrize("form", [f for f in FORMS if f != "native"])
def test_other_forms_pass_on_openvino(ckpt, form, tmp_path):
    path = export_form(ckpt, form, tmp_path / f"{form}.onnx", seq=SEQ, batch=BATCH, stateful=True)
    report = verify_model(path, options=VerifyOptions(runners=("openvino-cpu",), batch=BATCH, seq=SEQ))
    assert report.passed, report.to_table()
    assert not report.parity.warnings
    assert {r.output for r in report.parity.rows} == {"y", "hn", "cn"}
