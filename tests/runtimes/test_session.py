"""runtimes.session, the one ORT session factory: the real placement check on CPU (retried for a graph that cannot
run one step), and the warning path with a node faked onto another provider at the factory's seam (on CPU,
requested cpu is always placed cpu)."""
import warnings

import numpy as np
import pytest

from lstm_onnx.bench.models import export_form, random_checkpoint
from lstm_onnx.runtimes import session as session_mod
from lstm_onnx.runtimes.embed import Predictor
from lstm_onnx.runtimes.ort import OnnxRuntimeRunner
from lstm_onnx.runtimes.session import PlacementWarning, open_session, warmup_feeds
from tests import models
from tests.placement_fakes import ELSEWHERE, profiled_by_hand


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    return export_form(random_checkpoint(4, 8), "native", tmp_path_factory.mktemp("session") / "native.onnx",
                       stateful=True)


def test_cpu_session_reports_where_every_node_ran(native):
    import onnx

    opened = open_session(native, "cpu")
    assert opened.requested == "cpu" and opened.providers == ["CPUExecutionProvider"] and not opened.tf32
    assert opened.problems == []
    assert sorted(opened.placements, key=lambda p: p.node) == sorted(profiled_by_hand(native, {"x": np.zeros((1, 1, 4), np.float32), "h0": np.zeros((1, 1, 8), np.float32),
                                              "c0": np.zeros((1, 1, 8), np.float32)}),
                                                                     key=lambda p: p.node)
    report = opened.placement_report()
    assert report["checked"] and report["lstm"] == {"lstm0": "CPUExecutionProvider"}
    graph_nodes = {n.name for n in onnx.load(str(native)).graph.node}
    assert report["nodes"] == {"CPUExecutionProvider": len(opened.placements)}
    assert {p.node for p in opened.placements} <= graph_nodes


def test_profiling_ends_and_the_session_computes_as_an_unprofiled_one(native):
    import onnxruntime as ort

    so = ort.SessionOptions()
    opened = open_session(native, "cpu", session_options=so)
    assert not so.enable_profiling  # the caller's options are left as given
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32),
             "h0": np.zeros((1, 2, 8), np.float32), "c0": np.zeros((1, 2, 8), np.float32)}
    plain = ort.InferenceSession(str(native), providers=["CPUExecutionProvider"])
    for got, want in zip(opened.session.run(None, feeds), plain.run(None, feeds)):
        np.testing.assert_array_equal(got, want)
    # still profiling would make end_profiling return a file name; ended, it returns ""
    assert opened.session.end_profiling() == ""


def test_an_lstm_elsewhere_than_requested_is_a_problem_with_the_fix(native, lstm_elsewhere):
    opened = open_session(native, "cpu", name="onnxruntime-cpu")
    (problem,) = opened.problems
    assert problem.startswith("onnxruntime-cpu: LSTM node 'lstm0' ran on CUDAExecutionProvider although cpu")
    assert "--form decomposed" in problem
    assert opened.placement_report()["lstm"] == {"lstm0": ELSEWHERE}


def test_a_failed_warm_up_is_reported_not_hidden(native, monkeypatch):
    def fails(session):
        raise RuntimeError("zeros are not enough")
    monkeypatch.setattr(session_mod, "profile_placements", fails)
    opened = open_session(native, "cpu", name="r")
    assert opened.placements is None and not opened.placement_report()["checked"]
    assert opened.problems == ["r: placement not checked: the warm-up run on zero inputs failed "
                               "(zeros are not enough)"]


def test_no_warm_up_run_under_cuda_graph_capture(native, monkeypatch):
    monkeypatch.setattr(session_mod, "profile_placements", lambda s: pytest.fail("warm-up run under CUDA graphs"))
    opened = open_session(native, "cpu", provider_options={"enable_cuda_graph": "1"})
    assert opened.placements is None and opened.problems == []


def test_warmup_feeds_fill_symbolic_dims_with_one_and_keep_static_ones(tmp_path):
    serve = models.export(models.checkpoint(), tmp_path / "s.onnx", stateful=True, lengths=True)
    feeds = warmup_feeds(open_session(serve, check_placement=False).session)
    F, H = models.F, models.H
    assert {k: (v.shape, v.dtype.name) for k, v in feeds.items()} == {
        "x": ((1, 1, F), "float32"), "lengths": ((1,), "int32"), "h0": ((1, 1, H), "float32"),
        "c0": ((1, 1, H), "float32")}
    assert feeds["lengths"].tolist() == [1] and not feeds["x"].any()
    unrolled = export_form(random_checkpoint(4, 8), "unrolled", tmp_path / "u.onnx", seq=3, batch=2)
    assert warmup_feeds(open_session(unrolled, check_placement=False).session)["x"].shape == (2, 3, 4)


def test_predictor_warns_once_per_problem_and_reports_placement(native, lstm_elsewhere):
    with pytest.warns(PlacementWarning, match="--form decomposed"):
        pred = Predictor.load(native)
    assert pred.placement["lstm"] == {"lstm0": ELSEWHERE} and len(pred.placement_problems) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Predictor.load(native, warn=False).placement_problems == pred.placement_problems


def test_runner_has_placements_at_activation_and_keeps_them(native, lstm_elsewhere):
    runner = OnnxRuntimeRunner(native, "cpu")
    with runner:
        assert {p.op_type for p in runner.placements} >= {"LSTM"}
        assert runner.placement_problems and "onnxruntime-cpu" in runner.placement_problems[0]
    assert runner.placements and runner.session is None
    unchecked = OnnxRuntimeRunner(native, "cpu", profile=False)
    with unchecked:
        assert unchecked.placements is None and unchecked.placement_problems == []


def test_the_stepper_session_is_opened_like_the_predictors(native, monkeypatch):
    seen = []
    real = session_mod.open_session

    def recording(model, provider="cpu", **kw):
        seen.append((provider, kw.get("threads"), kw.get("spinning"), kw.get("check_placement", True)))
        return real(model, provider, **kw)
    monkeypatch.setattr(session_mod, "open_session", recording)
    pred = Predictor.load(native, threads=1, spinning=False)
    pred.stream()
    assert seen == [("cpu", 1, False, True), ("cpu", 1, False, False)]
    assert not pred.step_session().get_session_options().enable_profiling


def test_a_model_that_cannot_run_one_step_is_still_placed(capfd):
    """A Conv1d front end (kernel 3) fails on the one-step warm-up; the retry at WARMUP_RETRY_SIZE places it,
    and the first failure prints nothing."""
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 3], np.ones(18, np.float32))
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "seq"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, None])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opened = open_session(model.SerializeToString(), "cpu")
    assert opened.problems == [] and [p.node for p in opened.placements] == ["conv"]
    assert "Invalid input shape" not in capfd.readouterr().err


@pytest.mark.parametrize("policy, threads, want_threads, want_spin", [
    ("PASSIVE", None, 3, "0"), ("ACTIVE", None, 3, None), ("PASSIVE", 1, 1, "0")])
def test_sessions_take_threads_and_spinning_from_the_thread_policy(native, monkeypatch, policy, threads,
                                                                   want_threads, want_spin):
    from lstm_onnx.core import threads as thread_policy

    monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    monkeypatch.setattr(thread_policy, "usable_cores", lambda *a, **k: 3)
    so = open_session(native, "cpu", threads=threads, check_placement=False).session.get_session_options()
    assert so.intra_op_num_threads == want_threads and so.inter_op_num_threads == 1
    if want_spin is None:  # never set: onnxruntime's default, spinning
        with pytest.raises(RuntimeError, match="allow_spinning"):
            so.get_session_config_entry("session.intra_op.allow_spinning")
    else:
        assert so.get_session_config_entry("session.intra_op.allow_spinning") == want_spin
