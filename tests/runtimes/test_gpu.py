"""GPU checks (make test-gpu): ORT CUDA parity and placement per form, fp16, TF32, and the GPU benchmark.

They need onnxruntime-gpu with a working CUDA device; elsewhere they skip with the reason.
"""
import os

import pytest

from lstm_onnx.bench.models import export_form, random_checkpoint
from lstm_onnx.exporters.forms import FORMS
from lstm_onnx.runtimes.compare import Tolerances
from lstm_onnx.runtimes.ort import available_providers
from lstm_onnx.runtimes.tolerances import default_tolerance
from lstm_onnx.runtimes.verify import VerifyOptions, verify_model

pytestmark = pytest.mark.gpu
BATCH, SEQ = 8, 50


def _cuda_usable() -> str:
    try:
        if "cuda" not in available_providers():
            return "onnxruntime has no CUDA provider (pip install onnxruntime-gpu)"
    except ImportError:
        return "onnxruntime is not installed"
    return ""


@pytest.fixture(scope="module", autouse=True)
def need_cuda():
    why = _cuda_usable()
    if why:
        pytest.skip(why)


@pytest.fixture(scope="module")
def ckpt():
    return random_checkpoint(32, 128, num_layers=2, seed=5)


def export(ckpt, form, tmp_path, **kw):
    return export_form(ckpt, form, tmp_path / f"{form}.onnx", seq=SEQ, batch=BATCH, stateful=True, **kw)


CUDA_RUNNERS = ("onnxruntime-cuda", "onnxruntime-cuda-iobinding")


@pytest.mark.parametrize("form", list(FORMS))
def test_parity_on_ort_cuda(ckpt, form, tmp_path):
    runners = CUDA_RUNNERS + (("onnxruntime-cuda-graph",) if FORMS[form].cuda_graph_capturable else ())
    report = verify_model(export(ckpt, form, tmp_path), ckpt,
                          VerifyOptions(runners=runners, batch=BATCH, seq=SEQ))
    assert not report.parity.skipped and not report.parity.errors, report.to_table()
    assert report.passed, report.to_table()


def test_native_peephole_lstm_is_placed_on_cpu_and_reported(ckpt, tmp_path):
    report = verify_model(export(ckpt, "native", tmp_path), ckpt,
                          VerifyOptions(runners=("onnxruntime-cuda",), batch=BATCH, seq=SEQ))
    lstm = [p for p in report.placements["onnxruntime-cuda"] if p.op_type == "LSTM"]
    assert lstm and all(p.provider == "CPUExecutionProvider" for p in lstm), report.to_table()
    assert any("no peephole support" in w and "--form decomposed" in w for w in report.placement_problems)
    strict = verify_model(export(ckpt, "native", tmp_path), ckpt,
                          VerifyOptions(runners=("onnxruntime-cuda",), batch=BATCH, seq=SEQ, strict_placement=True))
    assert not strict.passed


def test_decomposed_runs_entirely_on_cuda(ckpt, tmp_path):
    report = verify_model(export(ckpt, "decomposed", tmp_path), ckpt,
                          VerifyOptions(runners=("onnxruntime-cuda",), batch=BATCH, seq=SEQ, strict_placement=True))
    assert report.placement_problems == [], report.to_table()
    assert report.passed, report.to_table()


def test_fp16_decomposed_within_its_tolerance(ckpt, tmp_path):
    path = export_form(ckpt, "decomposed", tmp_path / "fp16.onnx", dtype="float16", stateful=True)
    report = verify_model(path, ckpt, VerifyOptions(runners=("onnxruntime-cuda",), batch=BATCH, seq=SEQ,
                                                    tolerances=Tolerances(default_tolerance("float16"))))
    assert report.passed, report.to_table()
    # and not trivially: float16 really differs from float32 by more than the float32 tolerance
    assert max(r.max_abs for r in report.parity.rows) > default_tolerance("float32").atol


def test_tf32_drift_is_visible_and_tolerated(tmp_path):
    big = random_checkpoint(512, 512, seed=7)
    path = export_form(big, "decomposed", tmp_path / "big.onnx", stateful=True)
    strict = verify_model(path, big, VerifyOptions(runners=("onnxruntime-cuda",), batch=16, seq=20))
    loose = verify_model(path, big, VerifyOptions(runners=("onnxruntime-cuda",), batch=16, seq=20, allow_tf32=True))
    assert strict.passed, strict.to_table()
    assert loose.passed, loose.to_table()
    assert any("TF32" in w for w in loose.parity.warnings)
    print("TF32 drift:", max(r.max_abs for r in loose.parity.rows), "vs fp32:", max(r.max_abs for r in strict.parity.rows))


@pytest.mark.slow
def test_gpu_benchmark(tmp_path):
    """hidden 512, seq 100, batch 64 and 256: every form on ORT CUDA (IOBinding, CUDA graphs for unrolled),
    the ORT CPU fallback, and cuDNN nn.LSTM (no P) as the anchor, in one run."""
    from lstm_onnx.bench.cases import Case
    from lstm_onnx.bench.report import to_table, write_all
    from lstm_onnx.bench.run import BenchConfig, run_bench

    threads = os.cpu_count() or 1
    config = BenchConfig(input_size=128, hidden=512, cases=(Case("batch64", 64, 100), Case("batch256", 256, 100)),
                         threads=(threads,), providers=("cpu", "cuda"), runtimes=("onnxruntime", "torch"),
                         min_time=0.5, gemm_n=4096)
    result = run_bench(config, log=print)
    out = os.environ.get("LSTM_PIPELINE_BENCH_OUT", str(tmp_path))
    write_all(result, out)
    print(to_table(result))
    good = [r for r in result.rows if not r.error]
    cuda_rows = [r for r in good if r.provider == "cuda" and r.runtime == "onnxruntime"]
    assert {r.form for r in cuda_rows} >= {"native", "decomposed"}, to_table(result)
    for case in ("batch64", "batch256"):
        peephole = [r.median_ms for r in cuda_rows if r.case == case]
        cpu = [r.median_ms for r in good if r.case == case and r.runner == "onnxruntime-cpu" and r.form == "native"]
        cudnn = [r.median_ms for r in good if r.case == case and r.runner == "torch-lstm-cuda"]
        if peephole and cpu:
            print(f"{case}: best peephole form on CUDA {min(peephole):.2f} ms = {cpu[0] / min(peephole):.1f}x "
                  f"faster than the CPU fallback (goal >= 4x)")
        if peephole and cudnn:
            print(f"{case}: {min(peephole) / cudnn[0]:.1f}x cuDNN without P (goal <= 3x)")


def test_predictor_on_cuda_has_tf32_off_and_warns_of_the_cpu_lstm(ckpt, tmp_path):
    """The serving path's session (runtimes/session.py): TF32 off unless asked, the placement checked at load."""
    from lstm_onnx.runtimes.embed import Predictor
    from lstm_onnx.runtimes.session import PlacementWarning

    native = export(ckpt, "native", tmp_path)
    with pytest.warns(PlacementWarning, match="no peephole support.*--form decomposed"):
        pred = Predictor.load(native, "cuda")
    assert pred.session.get_provider_options()["CUDAExecutionProvider"]["use_tf32"] == "0"
    assert set(pred.placement["lstm"].values()) == {"CPUExecutionProvider"}, pred.placement
    loose = Predictor.load(native, "cuda", allow_tf32=True, warn=False)
    assert loose.session.get_provider_options()["CUDAExecutionProvider"]["use_tf32"] == "1"
    decomposed = Predictor.load(export(ckpt, "decomposed", tmp_path), "cuda")
    assert decomposed.placement_problems == [] and decomposed.placement["checked"], decomposed.placement


def test_serve_strict_placement_refuses_a_native_peephole_model_on_cuda(ckpt, tmp_path):
    from lstm_onnx.serving.app import create_app
    from lstm_onnx.serving.settings import ServeSettings

    native = export(ckpt, "native", tmp_path)
    with pytest.raises(ValueError, match="--strict-placement: .*no peephole support"):
        create_app(ServeSettings(model=str(native), provider="cuda", strict_placement=True))
