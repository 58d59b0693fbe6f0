"""One benchmark worker: one runtime, form, provider and thread count, in its own process.

Run as `python -m runtimes.bench.worker` with a JSON spec on stdin; prints one JSON result on stdout.
Thread pools that spin (ORT, OpenVINO, OpenMP) ruin each other's timings on a small machine, so the parent
runs workers one at a time, each with its thread count fixed before any runtime is imported.
"""
from __future__ import annotations

import json
import sys

import numpy as np

from lstm_onnx.bench import peak
from lstm_onnx.bench.cases import peak_gemm_shapes
from lstm_onnx.bench.timing import sample, summary


def gemm_model(shape: tuple[int, int, int]) -> bytes:
    """A single [m, k] x [k, n] float32 MatMul with a constant weight (prepacked, as in the LSTM)."""
    from onnx import TensorProto, helper, numpy_helper

    m, k, n = shape
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((k, n)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def gemm_input(shape) -> dict[str, np.ndarray]:
    return {"a": np.random.default_rng(2).standard_normal(shape[:2]).astype(np.float32)}


def feeds_for(batch: int, seq: int, input_size: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(0).standard_normal((batch, seq, input_size)).astype(np.float32)}


class OrtBench:
    def __init__(self, spec):
        self.spec = spec
        self.placement_problems = []  # of the last timed session: a timing of nodes that ran elsewhere

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
            self.placement_problems = runner.placement_problems
            if hasattr(runner, "bind"):
                runner.bind(feeds)
                return sample(runner.run_bound, min_time)
            session = runner.session
            return sample(lambda: session.run(None, feeds), min_time)

    routes = ("MatMul",)

    def gemm(self, shape, route, min_time):
        return self.timed(gemm_model(shape), gemm_input(shape), min_time)


class OpenVINOBench:
    def __init__(self, spec):
        self.spec = spec

    def timed(self, model, feeds, min_time):
        from lstm_onnx.runtimes.openvino import OpenVINORunner

        runner = OpenVINORunner(model, threads=self.spec["threads"])
        with runner:
            return sample(lambda: runner.request.infer(feeds), min_time)

    routes = ("MatMul",)

    def gemm(self, shape, route, min_time):
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "gemm.onnx"
            path.write_bytes(gemm_model(shape))
            return self.timed(path, gemm_input(shape), min_time)


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

    @property
    def routes(self):
        # nn.LSTM on CPU runs oneDNN's RNN kernels, not the BLAS behind torch.mm: time both GEMM libraries
        return ("mm", "onednn") if self.device.type == "cpu" else ("mm",)

    def gemm(self, shape, route, min_time):
        import torch

        m, k, n = shape
        a, w = torch.randn(m, k, device=self.device), torch.randn(k, n, device=self.device)
        if route == "onednn":
            a, wt = a.to_mkldnn(), w.t().contiguous().to_mkldnn()
            return sample(lambda: torch._C._nn.mkldnn_linear(a, wt, None), min_time)
        out = torch.empty(m, n, device=self.device)  # a fresh output each run would time page faults too

        def run():
            torch.mm(a, w, out=out)
            self.sync()
        return sample(run, min_time)


class RunnerBench:
    """Any runner of runtimes/registry.py, timed through Runner.infer: a new runtime needs no class here."""

    routes = ("MatMul",)

    def __init__(self, spec):
        self.spec = spec

    def runner(self, model):
        from lstm_onnx.runtimes import registry

        info = registry.get(self.spec["runner"])
        ckpt = None
        if info.needs_checkpoint:
            from lstm_onnx.pipeline.checkpoint import load_checkpoint

            ckpt = load_checkpoint(self.spec["checkpoint"])
        return registry.make(info.name, registry.Request(model, ckpt, ["x"], threads=self.spec["threads"],
                                                         profile=False))

    def timed(self, model, feeds, min_time):
        with self.runner(model) as runner:
            return sample(lambda: runner.infer(feeds), min_time)

    def gemm(self, shape, route, min_time):
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "gemm.onnx"
            path.write_bytes(gemm_model(shape))
            return self.timed(path, gemm_input(shape), min_time)


WORKERS = {"runner": RunnerBench, "ort": OrtBench, "openvino": OpenVINOBench, "torch": TorchBench}  # Bench.worker


def run(spec: dict) -> dict:
    bench = WORKERS[spec.get("worker") or spec["kind"].split("-")[0]](spec)  # kind: ort, openvino, torch-lstm, ...
    result = {"spec": spec, "cases": {}}
    first = gemm_peak(bench, spec, result)
    module = bench.module() if isinstance(bench, TorchBench) else None
    for case in spec["cases"]:
        try:
            model = module if module is not None else case["model"]
            if model is None:
                raise RuntimeError(case.get("model_error", "no model for this case"))
            times = bench.timed(model, feeds_for(case["batch"], case["seq"], spec["input_size"]), spec["min_time"])
            result["cases"][case["name"]] = summary(times)
            if getattr(bench, "placement_problems", None):
                result["cases"][case["name"]]["placement_problems"] = bench.placement_problems
        except Exception as exc:  # reported per cell; one failing case must not lose the others
            result["cases"][case["name"]] = {"error": _short(exc)}
    again = gemm_peak(bench, spec, result, candidates=[first]) if first else None
    result["gemm"] = peak.best([p for p in (first, again) if p])
    result["gemm_gflops"] = result["gemm"]["gflops"] if result["gemm"] else None
    return result


def gemm_peak(bench, spec: dict, result: dict, candidates: list[dict] | None = None) -> dict | None:
    """The fastest GEMM run of every (shape, route): the LSTM's own shapes and a large square one, each warmed
    up and repeated for half a cell's time. Run before the cases over all of them and after the cases on the
    winner only (the faster is kept), so a burst of load from other processes does not lower the peak."""
    if candidates is None:
        shapes = peak_gemm_shapes(spec["cases"], spec["input_size"], spec["hidden"], spec["layers"],
                                  spec["gemm_n"])
        candidates = [{"shape": peak.shape_label(s), "route": r} for r in bench.routes for s in shapes]
    rates, errors = [], {}
    for c in candidates:
        shape = tuple(int(v) for v in c["shape"].split("x"))
        try:
            rates.append(peak.rate(shape, c["route"], bench.gemm(shape, c["route"], spec["min_time"] / 2)))
        except Exception as exc:  # a runtime failing a GEMM still gets its LSTM timed
            errors[f"{c['route']} {c['shape']}"] = _short(exc)
    if errors:
        result.setdefault("gemm_errors", {}).update(errors)
    result.setdefault("gemm_shapes", []).extend(rates)
    return peak.best(rates)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def main() -> None:
    spec = json.loads(sys.stdin.read())
    print(json.dumps(run(spec)))


if __name__ == "__main__":
    main()
