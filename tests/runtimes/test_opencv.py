"""The OpenCV DNN runner: parity with the float64 numpy reference, and every cell of its capability row measured
by `verify --runner opencv` on a model that needs exactly that feature (docs/runtimes.md has the numbers)."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

pytest.importorskip("cv2", reason="OpenCV is not installed: pip install '.[opencv]'")

from lstm_onnx.core import metadata  # noqa: E402
from lstm_onnx.exporters.export import ExportError, ExportOptions, export_checkpoint  # noqa: E402
from lstm_onnx.runtimes.base import RunnerError, RunnerUnavailable  # noqa: E402
from lstm_onnx.runtimes.capabilities import REFUSED, RUNTIMES, WRONG, YES, choose_form  # noqa: E402
from lstm_onnx.runtimes.compare import Tolerances, compare_outputs  # noqa: E402
from lstm_onnx.runtimes.numpy_ref import NumpyRunner  # noqa: E402
from lstm_onnx.runtimes.opencv import OpenCVRunner  # noqa: E402
from lstm_onnx.runtimes.verify import PASSED, VerifyOptions, model_feeds, verify_model  # noqa: E402
from tests.helpers import make_checkpoint  # noqa: E402
from tests.runtimes.test_verify_cases import layout_0_copy, layout_1_lstm  # noqa: E402

BATCH, SEQ = 4, 23
ROW = RUNTIMES["opencv"]


def export(tmp_path, ckpt, form="native", **options):
    path = tmp_path / f"{form}.onnx"
    if form == "unrolled":
        options.update(seq_len=SEQ, batch_size=BATCH)
    export_checkpoint(ckpt, path, ExportOptions(form=form, **options))
    return path


def peephole_checkpoint(peephole=True, **model):
    ckpt = make_checkpoint(peephole=peephole, head="sequence", **model)
    for name, value in ckpt.state_dict.items():  # x4 over the default U(-1/4, 1/4): dropping P is unmistakable
        if "peephole" in name:
            value.mul_(4.0)
    return ckpt


def run_opencv(path, feeds):
    with OpenCVRunner(path) as cv:
        return cv.infer(feeds)


@pytest.mark.parametrize("form", ["native", "decomposed", "unrolled"])
@pytest.mark.parametrize("peephole", [False, True], ids=["no-P", "P"])
def test_parity_with_the_numpy_reference(tmp_path, form, peephole):
    ckpt = peephole_checkpoint(peephole)
    path = export(tmp_path, ckpt, form, stateful=True)
    feeds = model_feeds(onnx.load(path), BATCH, SEQ, seed=1)
    got = run_opencv(path, feeds)
    with NumpyRunner(ckpt.state_dict, ckpt.model_config, list(feeds)) as ref:
        expected = ref.infer(feeds)
    rows = compare_outputs("opencv", got, expected, Tolerances())
    assert {r.output for r in rows} == {"y", "hn", "cn"} and all(r.passed for r in rows), rows
    if peephole:  # the mutation: against the math with P = 0 the same outputs fail
        zeroed = {k: v * 0 if "peephole" in k else v for k, v in ckpt.state_dict.items()}
        with NumpyRunner(zeroed, ckpt.model_config, list(feeds)) as without_p:
            assert not any(r.passed for r in compare_outputs("opencv", got, without_p.infer(feeds), Tolerances()))


def measured(report) -> str:
    """The capability cell a named `verify --runner opencv` run shows: OpenCV's own error (counted, or skipped
    as the refusal the table predicts) is refused; a mismatch is wrong."""
    why = report.parity.errors.get("opencv") or report.parity.skipped.get("opencv")
    if why:
        assert "OpenCV " in why and "\n" not in why, why  # the runtime's one line, not a traceback
        return REFUSED
    rows = [r for r in report.parity.rows if r.runner == "opencv"]
    assert rows, report.to_table()
    return YES if all(r.passed for r in rows) else WRONG


# Each model needs exactly its one feature of the table (native without P needs none of them).
CELL_MODELS = {
    "peepholes": (True, dict(form="native", stateful=True)),
    "sequence_lens": (False, dict(form="native", lengths=True, stateful=True)),
    "scan": (False, dict(form="decomposed", stateful=True)),
    "float16": (False, dict(form="unrolled", dtype="float16")),
    "int8": (False, dict(form="native", quantize="int8")),
}


@pytest.mark.parametrize("feature", CELL_MODELS)
def test_each_cell_is_what_verify_measures(tmp_path, feature):
    peephole, options = CELL_MODELS[feature]
    ckpt = peephole_checkpoint(peephole, num_layers=2)
    path = export(tmp_path, ckpt, **options)
    report = verify_model(path, ckpt, VerifyOptions(runners=("opencv",), batch=BATCH, seq=SEQ))
    assert measured(report) == getattr(ROW, feature), report.to_table()
    assert report.status != PASSED or getattr(ROW, feature) == YES


def test_sequence_lens_is_ignored(tmp_path):
    """What `wrong` is: OpenCV's LSTM returns what full-length items would give."""
    path = export(tmp_path, make_checkpoint(peephole=False, head="sequence"), lengths=True, stateful=True)
    feeds = model_feeds(onnx.load(path), BATCH, SEQ, seed=1)
    assert feeds["lengths"].min() < SEQ
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    run = lambda f: dict(zip(names, session.run(None, f)))  # noqa: E731
    got, tol = run_opencv(path, feeds), Tolerances()
    assert not any(r.passed for r in compare_outputs("opencv", got, run(feeds), tol))
    full = run({**feeds, "lengths": np.full_like(feeds["lengths"], SEQ)})
    assert all(r.passed for r in compare_outputs("opencv", got, full, tol))


@pytest.mark.parametrize("peephole", [False, True], ids=["no-P", "P"])
def test_layout_1_against_ort_on_the_layout_0_copy(tmp_path, peephole):
    """ORT refuses layout=1: the expected values come from the same node with layout=0 on transposed feeds."""
    path = tmp_path / "layout1.onnx"
    layout_1_lstm(path, peephole)
    feeds = model_feeds(onnx.load(path), BATCH, SEQ, seed=1)
    swap = lambda a: np.ascontiguousarray(np.swapaxes(a, 0, 1))  # noqa: E731  batch-major <-> time-major
    y, hn, cn = ort.InferenceSession(layout_0_copy(path).SerializeToString(), providers=["CPUExecutionProvider"]
                                     ).run(None, {k: swap(v) for k, v in feeds.items()})
    expected = {"y": np.transpose(y, (2, 0, 1, 3)), "hn": swap(hn), "cn": swap(cn)}
    passed = [r.passed for r in compare_outputs("opencv", run_opencv(path, feeds), expected, Tolerances())]
    assert passed == [ROW.layout_1 == YES] * 3


@pytest.mark.parametrize("peephole,lengths", [(True, False), (True, True), (False, True)])
def test_auto_target_picks_a_form_it_runs(tmp_path, peephole, lengths):
    ckpt = peephole_checkpoint(peephole)
    path = tmp_path / "auto.onnx"
    export_checkpoint(ckpt, path, ExportOptions(form="auto", target="opencv", lengths=lengths, stateful=True))
    meta = metadata.read(str(path))
    assert meta["target"] == "opencv" and meta["form"] == choose_form("opencv", peephole, lengths)
    report = verify_model(path, ckpt, VerifyOptions(runners=("opencv",), batch=BATCH, seq=SEQ))
    assert report.status == PASSED and {r.output for r in report.rows} == {"y", "hn", "cn"}, report.to_table()


def test_auto_float16_is_a_clear_error(tmp_path):
    """OpenCV's Gemm/MatMul take float32 or float64 only: no form runs float16, and auto says so."""
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="opencv refuses --form .* no other form avoids that") as info:
        export_checkpoint(make_checkpoint(), out, ExportOptions(form="auto", target="opencv", dtype="float16"))
    assert "\n" not in info.value.args[0] and not out.exists()


def test_a_missing_model_is_a_runner_error(tmp_path):
    with pytest.raises(RunnerError, match="opencv: cannot read"):
        OpenCVRunner(tmp_path / "nope.onnx").activate()


def test_without_cv2_it_is_unavailable_with_the_install_line(tmp_path, monkeypatch):
    import sys

    from lstm_onnx.runtimes import registry

    path = export(tmp_path, make_checkpoint(peephole=False))
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(RunnerUnavailable, match=r"opencv is not installed; to install: pip install"):
        registry.make("opencv", registry.Request(path)).activate()
    report = verify_model(path, options=VerifyOptions(runners=("opencv",)))
    assert report.parity.skipped["opencv"].startswith("unavailable (opencv is not installed")


def test_an_opencv_assertion_is_one_line_without_the_source_path():
    import cv2

    from lstm_onnx.runtimes.opencv import cv_message

    with pytest.raises(cv2.error) as info:
        cv2.resize(np.zeros((0, 0), np.float32), (2, 2))
    assert "\n" in str(info.value).strip() or ".cpp" in str(info.value)
    assert cv_message(info.value) == "(-215:Assertion failed) !ssize.empty() in resize"


def test_an_op_it_lacks_is_our_one_line_not_its_log(tmp_path, capfd):
    """OpenCV logs the ops it has no layer for at import (a WARN line on stderr); the runner's error says it."""
    path = export(tmp_path, make_checkpoint(peephole=False), quantize="int8")
    capfd.readouterr()
    with pytest.raises(RunnerError, match="no layer for com.microsoft.DynamicQuantizeLSTM"):
        OpenCVRunner(path).activate()
    assert capfd.readouterr().err == ""
