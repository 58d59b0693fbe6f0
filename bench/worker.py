"""One benchmark worker: one runtime, form, provider and thread count, in its own process.

Run as `python -m runtimes.bench.worker` with a JSON spec on stdin; prints one JSON result on stdout.
Thread pools that spin (ORT, OpenVINO, OpenMP) ruin each other's timings on a small machine, so the parent
runs workers one at a time, each with its thread count fixed before any runtime is imported.
"""
from __future__ import annotations

import json
import sys

import numpy as np

from lstm_onnx.bench.timing import sample, summary


def gemm_model(n: int) -> bytes:
    """A single [n, n] x [n, n] float32 MatMul: the runtime's achievable GEMM peak."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((n, n)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def feeds_for(batch: int, seq: int, input_size: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(0).standard_normal((batch, seq, input_size)).astype(np.float32)}


class OrtBench:
    def __init__(self, spec):
        self.spec = spec

    def runner(self, model):
        from lstm_onnx.runtimes.ort import OnnxRuntimeBoundRunner, OnnxRuntimeRunner

        s = self.spec
        if s.get("io_binding"):
            return OnnxRuntimeBoundRunner(model, s["provider"], cuda_graph=s.get("cuda_graph", False),
                                          threads=s["threads"])
        return OnnxRuntimeRunner(model, s["provider"], threads=s["threads"])

    def timed(self, model, feeds, min_time):
        runner = self.runner(model)
        with runner:
            if hasattr(runner, "bind"):
                runner.bind(feeds)
                return sample(runner.run_bound, min_time)
            session = runner.session
            return sample(lambda: session.run(None, feeds), min_time)

    def gemm(self, n, min_time):
        a = {"a": np.random.default_rng(2).standard_normal((n, n)).astype(np.float32)}
        return self.timed(gemm_model(n), a, min_time)


class OpenVINOBench:
    def __init__(self, spec):
        self.spec = spec

    def timed(self, model, feeds, min_time):
        from lstm_onnx.runtimes.openvino import OpenVINORunner

        runner = OpenVINORunner(model, threads=self.spec["threads"])
        with runner:
            return sample(lambda: runner.request.infer(feeds), min_time)

    def gemm(self, n, min_time):
        import tempfile
        from pathlib import Path

        a = {"a": np.random.default_rng(2).standard_normal((n, n)).astype(np.float32)}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "gemm.onnx"
            path.write_bytes(gemm_model(n))
            return self.timed(path, a, min_time)


class TorchBench:
    """`torch-peephole`: the project's PeepholeLSTM model, eager. `torch-lstm`: nn.LSTM without P (cuDNN on
    CUDA), the anchor."""

    def __init__(self, spec):
        import torch

        torch.set_num_threads(spec["threads"])
        self.spec = spec
        self.device = torch.device(spec.get("device", "cpu"))

    def sync(self):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def module(self):
        import torch

        s = self.spec
        if s["kind"] == "torch-lstm":
            return torch.nn.LSTM(s["input_size"], s["hidden"], s["layers"], batch_first=True).to(self.device).eval()
        from lstm_onnx.pipeline.checkpoint import load_checkpoint

        return load_checkpoint(s["checkpoint"]).build_model().to(self.device).eval()

    def timed(self, module, feeds, min_time):
        import torch

        x = torch.from_numpy(feeds["x"]).to(self.device)

        def run():
            with torch.inference_mode():
                module(x)
            self.sync()
        return sample(run, min_time)

    def gemm(self, n, min_time):
        import torch

        a = torch.randn(n, n, device=self.device)
        b = torch.randn(n, n, device=self.device)

        def run():
            torch.mm(a, b)
            self.sync()
        return sample(run, min_time)


def run(spec: dict) -> dict:
    kind = spec["kind"]
    bench = {"ort": OrtBench, "openvino": OpenVINOBench}.get(kind, TorchBench)(spec)
    result = {"spec": spec, "cases": {}}
    peak_before = gemm_peak(bench, spec, result)
    module = bench.module() if isinstance(bench, TorchBench) else None
    for case in spec["cases"]:
        try:
            model = module if module is not None else case["model"]
            if model is None:
                raise RuntimeError(case.get("model_error", "no model for this case"))
            times = bench.timed(model, feeds_for(case["batch"], case["seq"], spec["input_size"]), spec["min_time"])
            result["cases"][case["name"]] = summary(times)
        except Exception as exc:  # reported per cell; one failing case must not lose the others
            result["cases"][case["name"]] = {"error": _short(exc)}
    peak_after = gemm_peak(bench, spec, result)
    peaks = [p for p in (peak_before, peak_after) if p]
    result["gemm_gflops"] = max(peaks) if peaks else None
    return result


def gemm_peak(bench, spec: dict, result: dict) -> float | None:
    """GFLOP/s of the fastest [n, n] GEMM run. Measured before and after the cases (the larger is kept) and
    from the fastest run, so a burst of load from other processes does not lower the peak."""
    n = spec["gemm_n"]
    try:
        return 2.0 * n ** 3 / (min(bench.gemm(n, spec["min_time"])) * 1e6)
    except Exception as exc:  # a runtime failing its GEMM still gets its LSTM timed
        result["gemm_error"] = _short(exc)
        return None


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def main() -> None:
    spec = json.loads(sys.stdin.read())
    print(json.dumps(run(spec)))


if __name__ == "__main__":
    main()
