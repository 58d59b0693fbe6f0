"""Placement from ORT profiling: parsed from a real session, and turned into loud, specific warnings."""
import numpy as np
import pytest

from lstm_onnx.bench.models import export_form, random_checkpoint
from lstm_onnx.runtimes.ort import OnnxRuntimeRunner
from lstm_onnx.runtimes.placement import NodePlacement, fallback_warnings, lstm_nodes_with_peepholes, parse_profile


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    path = tmp_path_factory.mktemp("placement") / "native.onnx"
    return export_form(random_checkpoint(4, 8), "native", path)


def test_profiled_session_reports_every_executed_node(native):
    import onnx

    model = onnx.load(str(native))
    runner = OnnxRuntimeRunner(native, "cpu", profile=True)
    with runner:
        runner.infer({"x": np.zeros((2, 5, 4), np.float32)})
    ops = {p.op_type for p in runner.placements}
    assert "LSTM" in ops
    assert {p.provider for p in runner.placements} == {"CPUExecutionProvider"}
    # every placed node is a real node of the graph (names parsed correctly from "<name>_kernel_time")
    assert {p.node for p in runner.placements} <= {n.name for n in model.graph.node}
    assert lstm_nodes_with_peepholes(model) == {"lstm0"}


def test_parse_profile_ignores_non_node_events():
    events = [{"cat": "Session", "name": "model_run", "args": {}},
              {"cat": "Node", "name": "lstm0_fence_before", "args": {"op_name": "LSTM"}},
              {"cat": "Node", "name": "lstm0_kernel_time", "args": {"op_name": "LSTM", "provider": "CPUExecutionProvider"}},
              {"cat": "Node", "name": "mm_kernel_time", "args": {"op_name": "MatMul", "provider": "CUDAExecutionProvider"}}]
    assert parse_profile(events) == [NodePlacement("lstm0", "LSTM", "CPUExecutionProvider"),
                                     NodePlacement("mm", "MatMul", "CUDAExecutionProvider")]


def test_peephole_lstm_on_cpu_under_cuda_is_explained(native):
    import onnx

    model = onnx.load(str(native))
    placed = [NodePlacement("lstm0", "LSTM", "CPUExecutionProvider"),
              NodePlacement("Gemm", "Gemm", "CUDAExecutionProvider"),
              NodePlacement("Memcpy", "MemcpyToHost", "CPUExecutionProvider")]
    warnings = fallback_warnings("onnxruntime-cuda", "CUDAExecutionProvider", "cuda", placed, model)
    assert len(warnings) == 1  # the Memcpy ORT inserted itself is not a fallback
    assert "LSTM" in warnings[0] and "CPUExecutionProvider although cuda was requested" in warnings[0]
    assert "no peephole support" in warnings[0] and "--form decomposed" in warnings[0]


def test_lstm_without_peepholes_gets_no_peephole_blame(tmp_path):
    import onnx

    path = export_form(random_checkpoint(4, 8, peephole=False), "native", tmp_path / "plain.onnx")
    placed = [NodePlacement("lstm0", "LSTM", "CPUExecutionProvider")]
    (warning,) = fallback_warnings("onnxruntime-cuda", "CUDAExecutionProvider", "cuda", placed, onnx.load(str(path)))
    assert "peephole" not in warning


def test_nothing_to_warn_when_everything_ran_where_requested():
    placed = [NodePlacement("a", "LSTM", "CPUExecutionProvider")]
    assert fallback_warnings("onnxruntime-cpu", "CPUExecutionProvider", "cpu", placed) == []
