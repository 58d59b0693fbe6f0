"""The GEMM peak: which shapes are timed, how the peak is picked from timings and pooled over workers, a real
worker measuring it, and how the report shows it (and a row faster than it)."""
import json
import time

import pytest

from lstm_onnx.bench import peak, worker
from lstm_onnx.bench.cases import Case, lstm_flops, lstm_gemm_shapes, peak_gemm_shapes
from lstm_onnx.bench.report import OVER, headline, peak_warnings, to_table, write_json
from lstm_onnx.bench.run import BenchConfig, BenchResult, Row, run_worker
from lstm_onnx.bench.timing import sample


def test_lstm_gemm_shapes():
    assert lstm_gemm_shapes(64, 100, 64, 256) == [(6400, 64, 1024), (64, 64, 1024), (64, 256, 1024)]
    # layer 2 reads H features; its recurrent GEMM has layer 1's shape and is listed once
    assert lstm_gemm_shapes(2, 3, 4, 8, layers=2) == [(6, 4, 32), (2, 4, 32), (2, 8, 32), (6, 8, 32)]


@pytest.mark.parametrize("batch, seq, layers", [(64, 100, 1), (3, 7, 2), (1, 1, 3)])
def test_lstm_gemm_shapes_add_up_to_the_lstm_flops(batch, seq, layers):
    """Each layer's one-step input GEMM plus its recurrent GEMM, times S steps, is the FLOP count % peak uses."""
    per_layer = []
    for layer in range(layers):
        k_in = 4 if layer == 0 else 8
        per_layer.append(2 * batch * k_in * 32 + 2 * batch * 8 * 32)
    assert seq * sum(per_layer) == lstm_flops(batch, seq, 4, 8, layers)
    shapes = lstm_gemm_shapes(batch, seq, 4, 8, layers)
    assert (seq * batch, 4, 32) in shapes and (batch, 8, 32) in shapes


def test_peak_gemm_shapes_cover_every_case_and_the_square():
    cases = [{"batch": 1, "seq": 1}, {"batch": 64, "seq": 100}]
    assert peak_gemm_shapes(cases, 64, 256, 1, 1024) == [
        (1, 64, 1024), (1, 256, 1024), (6400, 64, 1024), (64, 64, 1024), (64, 256, 1024), (1024, 1024, 1024)]


def test_rate_is_the_fastest_repeat():
    # 2·64·32·16 = 65536 FLOP; runs of 0.004, 0.002, 0.008 ms -> 16.384, 32.768, 8.192 GFLOP/s
    r = peak.rate((64, 32, 16), "mm", [0.004, 0.002, 0.008])
    assert r["shape"] == "64x32x16" and r["route"] == "mm"
    assert r["gflops"] == pytest.approx(32.768)
    assert r["spread"] == pytest.approx({"min": 8.192, "median": 16.384, "max": 32.768, "n": 3})


def test_best_shape_wins_even_when_it_is_not_the_square():
    square = peak.rate((1024, 1024, 1024), "mm", [30.0, 25.0, 40.0])  # 85.9 GFLOP/s at best
    projection = peak.rate((6400, 64, 1024), "onednn", [2.0, 1.5, 9.0])  # 559.2 at best, 93.2 at worst
    recurrent = peak.rate((64, 256, 1024), "mm", [0.5, 0.45])  # 74.6
    top = peak.best([square, projection, recurrent])
    assert (top["shape"], top["route"]) == ("6400x64x1024", "onednn")
    assert top["gflops"] == pytest.approx(2 * 6400 * 64 * 1024 / 1.5e6)
    assert peak.best([]) is None


def test_run_peak_is_the_max_over_workers_with_their_spread():
    def worker(gflops):
        return {"shape": "8x8x8", "route": "mm", "gflops": gflops, "spread": {}}

    peaks = peak.run_peaks([("ort t2", worker(315.0)), ("ort t2", worker(407.0)), ("ort t2", worker(350.0)),
                            ("ort t1", worker(200.0)), ("ort t1", None)])
    assert peaks["ort t2"]["gflops"] == 407.0
    assert peaks["ort t2"]["workers"] == {"min": 315.0, "median": 350.0, "max": 407.0, "n": 3}
    assert peaks["ort t1"]["gflops"] == 200.0 and peaks["ort t1"]["workers"]["n"] == 1


def _row(runner, runtime, threads, gflops, case="batch"):
    return Row(case, 64, 100, runner, runtime, "native", "cpu", threads, median_ms=1.0, p99_ms=1.2,
               seq_per_s=64e3, gflops=gflops)


def _peak(gflops, shape="6400x64x1024", route="MatMul"):
    return {"shape": shape, "route": route, "gflops": gflops,
            "spread": {"min": gflops / 2, "median": gflops * 0.9, "max": gflops, "n": 7},
            "workers": {"min": gflops * 0.8, "median": gflops * 0.9, "max": gflops, "n": 3}}


def test_apply_divides_by_the_run_peak_of_the_same_runtime_and_threads():
    rows = [_row("onnxruntime-cpu", "onnxruntime", 2, 100.0), _row("torch-lstm-cpu", "torch", 1, 92.0),
            _row("openvino-cpu", "openvino", 1, 10.0)]
    peaks = {peak.peak_key("onnxruntime", "cpu", 2): _peak(400.0), peak.peak_key("onnxruntime", "cpu", 1): _peak(9.0),
             peak.peak_key("torch", "cpu", 1): _peak(50.0)}
    peak.apply(rows, peaks)
    ort, torch, ov = rows
    assert (ort.gemm_gflops, ort.pct_of_gemm_peak, ort.peak_exceeded) == (400.0, 25.0, False)
    assert torch.pct_of_gemm_peak == pytest.approx(184.0) and torch.peak_exceeded
    assert ov.gemm_gflops is None and ov.pct_of_gemm_peak is None and not ov.peak_exceeded


def _result():
    rows = [_row("onnxruntime-cpu", "onnxruntime", 1, 50.0), _row("torch-lstm-cpu", "torch", 1, 92.0)]
    peaks = {peak.peak_key("onnxruntime", "cpu", 1): _peak(200.0),
             peak.peak_key("torch", "cpu", 1): _peak(50.0, "1024x1024x1024", "mm")}
    config = {"cases": [{"name": "batch", "batch": 64, "seq": 100}], "input_size": 64, "hidden": 256, "layers": 1}
    result = BenchResult(config, rows, peaks=peaks)
    peak.apply(result.rows, result.peaks)
    return result


@pytest.mark.parametrize("markdown", [False, True])
def test_table_shows_peaks_their_spread_and_flags_a_row_over_peak(markdown):
    result = _result()
    text = to_table(result, markdown=markdown)
    lines = text.splitlines()
    cells = [line for line in lines if not line.startswith("WARNING")]
    ort = next(line for line in cells if "onnxruntime-cpu" in line and "native" in line)
    assert "200.0" in ort and "25.0" in ort
    torch = next(line for line in cells if "torch-lstm-cpu" in line and "native" in line)
    assert OVER in torch and "184" not in torch
    warnings = [line for line in lines if line.startswith("WARNING: GEMM peak understated")]
    assert len(warnings) == 2 and lines[0] == warnings[0]  # first thing shown, and again above the headline
    assert "184.0%" in warnings[0] and "torch-lstm-cpu" in warnings[0]
    peak_row = next(line for line in lines if line.lstrip("| ").startswith("torch-cpu"))
    for cell in ("50.0", "1024x1024x1024", "mm", "25.0 / 45.0 / 50.0", "40.0 / 45.0 / 50.0 (3)"):
        assert cell in peak_row
    assert any("workers min/med/max" in line for line in lines)


def test_headline_and_json_say_when_the_peak_is_exceeded(tmp_path):
    result = _result()
    assert any("25.0% of ORT GEMM peak" in line for line in headline(result))
    result.rows[0].gflops = 250.0
    peak.apply(result.rows, result.peaks)
    assert any("OVER the ORT GEMM peak" in line for line in headline(result))
    write_json(result, tmp_path / "bench.json")
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["peaks"]["torch-cpu t1"]["workers"]["n"] == 3
    assert len(data["warnings"]) == 2 == len(peak_warnings(result))
    assert [r["peak_exceeded"] for r in data["rows"]] == [True, True]


def test_sample_warms_up_for_the_warmup_time_before_timing():
    stamps = []
    times = sample(lambda: stamps.append(time.perf_counter()), min_time=0.01, warmup=2, warmup_time=0.03)
    warm = len(stamps) - len(times)
    assert warm >= 2 and stamps[warm] - stamps[0] >= 0.03


@pytest.mark.slow
@pytest.mark.parametrize("kind, routes", [("torch-lstm", {"mm", "onednn"}), ("ort", {"MatMul"})])
def test_worker_measures_the_peak_over_shapes_and_routes(kind, routes):
    """A real worker process: every (shape, route) is timed, the peak is the fastest of them, with its spread."""
    config = BenchConfig(input_size=4, hidden=8, cases=(Case("streaming", 1, 1), Case("batch", 2, 3)),
                         threads=(1,), min_time=0.05, gemm_n=64)
    cases = [dict(name=c.name, batch=c.batch, seq=c.seq, model=None) for c in config.cases]
    spec = dict(kind=kind, runtime="x", provider="cpu", device="cpu", form="f", threads=1, cases=cases,
                input_size=4, hidden=8, layers=1, min_time=0.05, gemm_n=64)
    out = run_worker(spec, timeout=120)
    assert "error" not in out and not out.get("gemm_errors"), out
    timed = {(r["shape"], r["route"]) for r in out["gemm_shapes"]}
    shapes = {"1x4x32", "1x8x32", "6x4x32", "2x4x32", "2x8x32", "64x64x64"}
    assert {(s, r) for s in shapes for r in routes} <= timed
    best = out["gemm"]
    assert best["gflops"] == max(r["gflops"] for r in out["gemm_shapes"]) == out["gemm_gflops"] > 0
    spread = best["spread"]
    assert spread["min"] <= spread["median"] <= spread["max"] == best["gflops"] and spread["n"] >= 5


def test_a_row_whose_nodes_ran_off_its_provider_is_a_warning(tmp_path):
    """A timing of nodes that ran elsewhere is not that provider's timing: the table and the JSON say so."""
    result = _result()
    problem = "onnxruntime-cuda: LSTM node 'lstm0' ran on CPUExecutionProvider although cuda was requested"
    result.rows[0].placement_problems = [problem]
    assert [line for line in to_table(result).splitlines() if problem in line] == \
        [f"WARNING: onnxruntime-cpu native @ batch: {problem}"] * 2
    write_json(result, tmp_path / "b.json")
    assert any(problem in w for w in json.loads((tmp_path / "b.json").read_text())["warnings"])


def test_the_worker_reports_placement_problems_per_case(monkeypatch):
    """The seam: whatever the ORT runner found at load lands in that case's cell."""
    from lstm_onnx.runtimes.ort import OnnxRuntimeRunner

    real = OnnxRuntimeRunner._activate

    def misplaced(self):
        real(self)
        self.placement_problems = ["faked: LSTM ran on CPU"]

    monkeypatch.setattr(OnnxRuntimeRunner, "_activate", misplaced)
    bench = worker.OrtBench({"provider": "cpu", "threads": 1})
    model = worker.gemm_model((4, 4, 4))
    bench.timed(model, worker.gemm_input((4, 4, 4)), 0.01)
    assert bench.placement_problems == ["faked: LSTM ran on CPU"]
