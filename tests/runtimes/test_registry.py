"""The runner registry: one vocabulary of names (aliases map into it), and one row is all a new runtime needs."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_onnx.runtimes import capabilities, registry
from lstm_onnx.runtimes.base import Runner
from lstm_onnx.runtimes.verify import FAILED, PASSED, verify_model

ROOT = Path(__file__).resolve().parents[2]


def test_capability_keys_are_runner_names():
    keys = {r.capability for r in registry.RUNNERS.values() if r.capability}
    assert keys <= set(capabilities.RUNTIMES)
    # every capability row but the targets with no runner is some runner's (onnxruntime-web runs in a browser:
    # tests/examples/test_web_page.py measures its row through examples/web)
    assert set(capabilities.RUNTIMES) - keys == {"onnx2torch", "onnxruntime-web"}
    for name, info in registry.RUNNERS.items():  # a runner's key is its own name or its base runtime's
        assert info.capability is None or name.startswith(info.capability)


@pytest.mark.parametrize("old,new", [("onnx.reference", "onnx-reference"), ("ort-cuda", "onnxruntime-cuda"),
                                     ("ort-cpu", "onnxruntime-cpu"), ("openvino", "openvino-cpu"),
                                     ("tensorrt", "onnxruntime-tensorrt"), ("ONNXRuntime-CPU", "onnxruntime-cpu")])
def test_old_spellings_are_aliases(old, new):
    assert registry.canonical(old) == new
    if new in capabilities.RUNTIMES:
        assert capabilities.runtime_key(old) == new and capabilities.runtime(old) is capabilities.RUNTIMES[new]


def test_every_alias_names_a_runner():
    assert set(registry.ALIASES.values()) <= set(registry.RUNNERS)
    assert not set(registry.ALIASES) & set(registry.RUNNERS)


def test_unknown_names_suggest_the_nearest():
    with pytest.raises(registry.UnknownRunner, match="did you mean onnxruntime-cuda"):
        registry.canonical("onnxruntime-cdua")
    with pytest.raises(registry.UnknownRunner, match="known: onnxruntime-cpu"):
        registry.canonical("warp-drive")
    with pytest.raises(KeyError, match="unknown target 'tpu'"):
        capabilities.runtime("tpu")


def test_runners_are_named_canonically():
    graph = registry.make("onnxruntime-cuda-iobinding+graph", registry.Request("m.onnx"))
    assert graph.name == "onnxruntime-cuda-graph" and graph.cuda_graph
    assert registry.make("onnx.reference", registry.Request("m.onnx")).name == "onnx-reference"


def test_cli_choices_come_from_the_registry():
    from lstm_onnx.cli.main import bench, verify

    runner = next(p for p in verify.params if p.name == "runners").type
    assert runner.names == [*registry.RUNNERS, "all"]
    runtime = next(p for p in bench.params if p.name == "runtimes").type
    assert set(runtime.names) == set(registry.bench_families()) | set(registry.bench_names())


def test_bench_selection_by_family_and_provider():
    names = lambda *a: [r.name for r in registry.bench_selection(*a)]  # noqa: E731
    assert names(None, ("cpu",)) == ["onnxruntime-cpu", "openvino-cpu", "torch"]
    assert names(None, ("cpu", "cuda")) == ["onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-cuda-iobinding",
                                           "onnxruntime-cuda-graph", "openvino-cpu", "torch", "torch-cuda"]
    assert names(("torch",), ("cpu", "cuda")) == ["torch", "torch-cuda"]
    assert names(("onnx-reference", "ort-cuda"), ("cpu",)) == ["onnx-reference", "onnxruntime-cuda"]
    with pytest.raises(registry.UnknownRunner, match="unknown bench runtime"):
        registry.bench_selection(("warp",), ("cpu",))


def test_registry_and_verify_import_without_torch():
    script = ("import sys; sys.modules['torch'] = None\n"
              "import lstm_onnx.runtimes.registry, lstm_onnx.runtimes.verify\n"
              "assert 'lstm_onnx.pipeline' not in sys.modules")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True)


class Offset(Runner):
    """A new runtime for the test: ORT CPU's outputs shifted by `offset` (0: right, else wrong)."""

    def __init__(self, path, offset: float):
        super().__init__()
        self.path, self.offset = path, offset

    def _activate(self):
        from lstm_onnx.runtimes.ort import OnnxRuntimeRunner

        self.inner = OnnxRuntimeRunner(self.path, profile=False).activate()

    def _input_names(self):
        return self.inner.input_names

    def _infer(self, feeds):
        return {k: v + np.float32(self.offset) for k, v in self.inner.infer(feeds).items()}

    def _deactivate(self):
        self.inner.deactivate()


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    from lstm_onnx.bench.models import export_form, random_checkpoint

    return export_form(random_checkpoint(4, 8, seed=2), "native", tmp_path_factory.mktemp("reg") / "m.onnx")


@pytest.mark.parametrize("offset,capability,status", [(0.0, None, PASSED), (1e-3, None, FAILED),
                                                       (1e-3, "openvino-cpu", PASSED)])
def test_one_row_adds_a_runtime_to_verify_and_bench(native, monkeypatch, offset, capability, status):
    """A row is all it takes: verify runs it by default and bench plans it. Its failure counts unless its
    capability row says it is wrong for this model (openvino-cpu: P wrong), then it is an expected one."""
    from lstm_onnx.bench.run import BenchConfig, plan

    row = registry.RunnerInfo("offset-cpu", capability, lambda req: Offset(req.model, offset),
                              bench=registry.Bench(), family="offset")
    monkeypatch.setitem(registry.RUNNERS, row.name, row)
    report = verify_model(native)
    rows = [r for r in report.rows if r.runner == "offset-cpu"]
    assert rows and all(r.passed == (offset == 0) for r in rows), report.to_table()
    assert rows[0].max_abs == pytest.approx(offset, abs=1e-6)
    assert report.status == status, report.to_table()
    if status == FAILED:
        assert any(f.startswith("offset-cpu y: max abs") for f in report.failures())
    specs, _ = plan(BenchConfig(runtimes=("offset",), threads=(1,), forms=("native",)), {"native": {}}, {}, "c.pt")
    assert [(s["runner"], s["worker"], s["form"]) for s in specs] == [("offset-cpu", "runner", "native")]


def test_the_generic_bench_worker_times_any_runner(native):
    from lstm_onnx.bench.worker import RunnerBench

    spec = dict(runner="onnx.reference", threads=1, checkpoint=None)
    times = RunnerBench(spec).timed(native, {"x": np.zeros((1, 3, 4), np.float32)}, 0.01)
    assert len(times) >= 5 and min(times) > 0
    assert min(RunnerBench(spec).gemm((8, 8, 8), "MatMul", 0.01)) > 0


def test_the_runner_table_lists_every_runner_once():
    lines = registry.render_markdown().splitlines()[2:]
    assert [line.split("`")[1] for line in lines] == list(registry.RUNNERS)
    assert all(registry.RUNNERS[line.split("`")[1]].about in line for line in lines)
