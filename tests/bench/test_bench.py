"""The benchmark's pieces: FLOP count, cases, one real worker, and the table/JSON/PNG it writes."""
import json

import pytest

from lstm_onnx.bench.cases import Case, lstm_flops, parse_case
from lstm_onnx.bench.report import headline, to_table, write_all
from lstm_onnx.bench.run import BenchConfig, run_bench
from lstm_onnx.core.machine import fingerprint, summary


def test_flops_formula():
    # 2·S·B·4H·(I+H): S=100, B=64, H=256, I=64
    assert lstm_flops(64, 100, 64, 256) == 2 * 100 * 64 * 4 * 256 * (64 + 256)
    # second layer reads H (times directions) features; each direction counts
    assert lstm_flops(1, 1, 10, 8, layers=2, directions=2) == 2 * (2 * 32 * 18) + 2 * (2 * 32 * 24)


def test_parse_case():
    assert parse_case("batch256=256x100") == Case("batch256", 256, 100)
    with pytest.raises(ValueError, match="NAME=BATCHxSEQ"):
        parse_case("batch=64by100")


@pytest.mark.slow
def test_tiny_bench_end_to_end(tmp_path):
    config = BenchConfig(input_size=4, hidden=8, cases=(Case("streaming", 1, 1), Case("batch", 2, 3)),
                         threads=(1,), forms=("native",), runtimes=("onnxruntime", "torch"), min_time=0.01,
                         gemm_n=64)
    result = run_bench(config, log=lambda m: None)
    runners = {r.runner for r in result.rows}
    assert runners == {"onnxruntime-cpu", "torch-peephole-cpu", "torch-lstm-cpu"}
    assert all(not r.error for r in result.rows), [r.error for r in result.rows if r.error]
    for r in result.rows:
        assert r.median_ms > 0 and r.p99_ms >= r.median_ms * 0.999
        assert r.gflops == pytest.approx(lstm_flops(r.batch, r.seq, 4, 8) / (r.median_ms * 1e6))
        assert r.pct_of_gemm_peak == pytest.approx(100 * r.gflops / r.gemm_gflops)
    assert any("% of ORT GEMM peak" in line for line in headline(result))
    assert any("PyTorch peephole module" in line for line in headline(result))
    paths = write_all(result, tmp_path)
    written = json.loads(paths["json"].read_text())
    assert written["rows"] and written["machine"]["cpu"] == fingerprint()["cpu"]
    assert summary(fingerprint()) in to_table(result).splitlines()
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "onnxruntime-cpu" in to_table(result)


def test_plan_follows_the_registry():
    from lstm_onnx.bench.run import label, plan

    models = {"native": {}, "unrolled": {}}
    config = BenchConfig(threads=(1, 2), runtimes=("onnxruntime", "torch", "onnx-reference"))
    specs, skipped = plan(config, models, {}, "model.pt")
    cells = {(label(s), s["worker"], s["form"], s["threads"]) for s in specs}
    assert cells == {("onnxruntime-cpu", "ort", f, t) for f in models for t in (1, 2)} | {
        ("torch-peephole-cpu", "torch", "eager", t) for t in (1, 2)} | {
        ("torch-lstm-cpu", "torch", "no P", t) for t in (1, 2)} | {
        ("onnx-reference", "runner", f, t) for f in models for t in (1, 2)}
    assert not skipped
    forms = {s["form"] for s in specs if s["runner"] == "onnxruntime-cpu"}
    assert forms == set(models)


def test_plan_skips_what_is_not_here():
    from lstm_onnx.bench.run import plan
    from lstm_onnx.runtimes.ort import available_providers

    if "cuda" in available_providers():
        pytest.skip("this machine has ORT CUDA")
    specs, skipped = plan(BenchConfig(providers=("cuda",), runtimes=("onnxruntime",)), {"native": {}}, {}, "m.pt")
    assert not specs
    assert set(skipped) == {"onnxruntime-cuda", "onnxruntime-cuda-iobinding", "onnxruntime-cuda-graph"}
    assert all(why.startswith("unavailable (provider 'cuda'") for why in skipped.values())
