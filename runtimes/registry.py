"""The ONE list of runners: one row per runner, by its canonical name.

A row says which capability-table row it answers to (runtimes/capabilities.py), how to build it, whether it
needs a checkpoint, whether `verify` runs it by default, and how `bench` drives it. verify, bench, the CLI's
choices and the capability table all use these names; old spellings are aliases of them.

Adding a runtime: a module with its Runner subclass, and one row here.
Importable without torch or any runtime: factories import their runner when called.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

from lstm_onnx.runtimes.base import Runner, RunnerUnavailable


class UnknownRunner(ValueError):
    """A runner name that is neither canonical nor an alias; the message suggests the nearest ones."""


@dataclass
class Request:
    """What a factory gets. `model`: a path (or bytes, for ORT); `ckpt`: a pipeline Checkpoint or None."""

    model: object
    ckpt: object = None
    input_names: list[str] = field(default_factory=lambda: ["x"])
    provider_options: dict[str, dict] = field(default_factory=dict)  # short ORT provider -> options
    allow_tf32: bool = False
    threads: int | None = None
    profile: bool = True  # ORT: check which provider runs each node


@dataclass(frozen=True)
class Bench:
    """How `bench` drives a runner. `worker` names the class in bench/worker.py: `runner` times
    Runner.infer and serves any row; ort, openvino and torch time their runtime's own call."""

    worker: str = "runner"
    default: bool = True  # benchmarked when no --runtime is named
    form_needs: str | None = None  # only export forms with this flag of exporters.forms.Form set
    spec: dict = field(default_factory=dict)  # extra worker settings
    variants: tuple[dict, ...] = ({},)  # one worker per variant, each merged into the spec


@dataclass(frozen=True)
class RunnerInfo:
    name: str
    capability: str | None  # its key in capabilities.RUNTIMES; None: not an ONNX runtime (reads the checkpoint)
    factory: Callable[[Request], Runner]
    needs_checkpoint: bool = False
    verify_default: bool = True  # run by `verify` when no --runner is named
    bench: Bench | None = None  # None: not benchmarked
    family: str = ""  # `bench --runtime FAMILY`: the family's rows on the --provider devices
    provider: str = "cpu"  # the device it computes on
    probe: Callable[[], str | None] | None = None  # why it cannot run here; None: it can (or it says so at run)
    about: str = ""


# -- factories: each imports its runtime only when called

def _ort(provider: str, fast: str = ""):
    def factory(req: Request) -> Runner:
        from lstm_onnx.runtimes.ort import OnnxRuntimeBoundRunner, OnnxRuntimeRunner

        kwargs = dict(provider_options=req.provider_options.get(provider), allow_tf32=req.allow_tf32,
                      threads=req.threads)
        if not fast:
            return OnnxRuntimeRunner(req.model, provider, profile=req.profile, **kwargs)
        graph = fast == "graph"
        return OnnxRuntimeBoundRunner(req.model, provider, cuda_graph=graph, profile=req.profile and not graph,
                                      **kwargs)
    return factory


def _ort_probe(provider: str):
    def probe() -> str | None:
        from lstm_onnx.runtimes.base import RunnerError
        from lstm_onnx.runtimes.ort import resolve_provider

        try:
            resolve_provider(provider)
        except RunnerError as exc:
            return str(exc)
        return None
    return probe


def _openvino(device: str):
    def factory(req: Request) -> Runner:
        from lstm_onnx.runtimes.openvino import OpenVINORunner

        return OpenVINORunner(req.model, device=device, threads=req.threads)
    return factory


def _openvino_probe() -> str | None:
    import importlib.util

    from lstm_onnx.runtimes.openvino import INSTALL

    return None if importlib.util.find_spec("openvino") else f"openvino is not installed; to install: {INSTALL}"


def _opencv(req: Request) -> Runner:
    from lstm_onnx.runtimes.opencv import OpenCVRunner

    return OpenCVRunner(req.model)


def _opencv_probe() -> str | None:
    import importlib.util

    from lstm_onnx.runtimes.opencv import INSTALL

    return None if importlib.util.find_spec("cv2") else f"opencv is not installed; to install: {INSTALL}"


def _onnx_reference(req: Request) -> Runner:
    from lstm_onnx.runtimes.onnx_reference import OnnxReferenceRunner

    return OnnxReferenceRunner(req.model)


def _numpy(req: Request) -> Runner:
    from lstm_onnx.runtimes.numpy_ref import NumpyRunner

    return NumpyRunner(req.ckpt.state_dict, req.ckpt.model_config, req.input_names)


def _torch(device: str):
    def factory(req: Request) -> Runner:
        from lstm_onnx.runtimes.torch_ref import TorchRunner

        return TorchRunner(req.ckpt.build_model(), req.input_names, device=device)
    return factory


def _torch_cuda_probe() -> str | None:
    from lstm_onnx.runtimes.torch_ref import cuda_missing

    return cuda_missing()


def _torch_bench(device: str) -> Bench:
    lstm_form = "cudnn, no P" if device == "cuda" else "no P"
    # torch-peephole: the project's PeepholeLSTM model, eager; torch-lstm: nn.LSTM without P, the anchor
    return Bench("torch", spec=dict(device=device),
                 variants=(dict(kind="torch-peephole", form="eager", label=f"torch-peephole-{device}"),
                           dict(kind="torch-lstm", form=lstm_form, label=f"torch-lstm-{device}")))


_ROWS = [
    RunnerInfo("onnxruntime-cpu", "onnxruntime-cpu", _ort("cpu"), bench=Bench("ort"), family="onnxruntime",
               probe=_ort_probe("cpu"), about="ONNX Runtime, CPU execution provider"),
    RunnerInfo("onnxruntime-cuda", "onnxruntime-cuda", _ort("cuda"), bench=Bench("ort"), family="onnxruntime",
               provider="cuda", probe=_ort_probe("cuda"),
               about="ONNX Runtime, CUDA execution provider (TF32 off unless --allow-tf32)"),
    RunnerInfo("onnxruntime-cuda-iobinding", "onnxruntime-cuda", _ort("cuda", "iobinding"),
               bench=Bench("ort", spec=dict(io_binding=True)), family="onnxruntime", provider="cuda",
               probe=_ort_probe("cuda"), about="ORT CUDA with IOBinding: inputs and outputs stay on the device"),
    RunnerInfo("onnxruntime-cuda-graph", "onnxruntime-cuda", _ort("cuda", "graph"), verify_default=False,
               bench=Bench("ort", form_needs="cuda_graph_capturable", spec=dict(io_binding=True, cuda_graph=True)),
               family="onnxruntime", provider="cuda", probe=_ort_probe("cuda"),
               about="ORT CUDA with IOBinding and CUDA graph capture (static shapes: the unrolled form)"),
    RunnerInfo("onnxruntime-tensorrt", "onnxruntime-tensorrt", _ort("tensorrt"), bench=Bench("ort"),
               family="onnxruntime", provider="tensorrt", probe=_ort_probe("tensorrt"),
               about="ONNX Runtime, TensorRT execution provider (CUDA for what TensorRT does not take)"),
    RunnerInfo("openvino-cpu", "openvino-cpu", _openvino("CPU"), bench=Bench("openvino"), family="openvino",
               probe=_openvino_probe, about="OpenVINO on the CPU (pip install .[openvino])"),
    RunnerInfo("onnx-reference", "onnx-reference", _onnx_reference, bench=Bench(default=False),
               family="onnx-reference", about="onnx.reference.ReferenceEvaluator; refused where its LSTM "
                                              "would silently ignore an input"),
    RunnerInfo("opencv", "opencv", _opencv, verify_default=False, bench=Bench(default=False), family="opencv",
               probe=_opencv_probe, about="OpenCV DNN (cv2.dnn, the 5.x engine) on the CPU (pip install .[opencv])"),
    RunnerInfo("numpy", None, _numpy, needs_checkpoint=True, bench=Bench(default=False), family="numpy",
               about="float64 numpy from the equations, from the checkpoint's weights"),
    RunnerInfo("torch", None, _torch("cpu"), needs_checkpoint=True, verify_default=False,
               bench=_torch_bench("cpu"), family="torch",
               about="the checkpoint's PyTorch model on the CPU (verify's baseline with a checkpoint)"),
    RunnerInfo("torch-cuda", None, _torch("cuda"), needs_checkpoint=True, bench=_torch_bench("cuda"),
               family="torch", provider="cuda", probe=_torch_cuda_probe,
               about="the checkpoint's PyTorch model on CUDA"),
]
RUNNERS: dict[str, RunnerInfo] = {row.name: row for row in _ROWS}  # in this order: verify's and bench's

# Old spellings. Each maps to exactly one canonical name; anything else is refused with "did you mean".
ALIASES = {
    "onnx.reference": "onnx-reference",
    "ort-cpu": "onnxruntime-cpu",
    "ort-cuda": "onnxruntime-cuda",
    "tensorrt": "onnxruntime-tensorrt",
    "ort-tensorrt": "onnxruntime-tensorrt",
    "openvino": "openvino-cpu",
    "onnxruntime-cuda-iobinding+graph": "onnxruntime-cuda-graph",
}


def resolve(name: str, known, what: str = "runner") -> str:
    """The canonical spelling of `name` among `known` (aliases mapped); UnknownRunner otherwise."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    known = list(known)
    if key in known:
        return key
    near = difflib.get_close_matches(key, known + list(ALIASES), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(dict.fromkeys(ALIASES.get(n, n) for n in near))}? " if near else ""
    raise UnknownRunner(f"unknown {what} {name!r}; {hint}known: {', '.join(known)}")


def canonical(name: str) -> str:
    return resolve(name, RUNNERS)


def get(name: str) -> RunnerInfo:
    return RUNNERS[canonical(name)]


def make(name: str, request: Request) -> Runner:
    """The runner `name` (or an alias) for `request`, named canonically. RunnerUnavailable if it needs a
    checkpoint and has none."""
    info = get(name)
    if info.needs_checkpoint and request.ckpt is None:
        raise RunnerUnavailable("needs a checkpoint (verify CHECKPOINT MODEL)")
    runner = info.factory(request)
    runner.name = info.name
    return runner


def verify_defaults(with_checkpoint: bool) -> list[str]:
    return [r.name for r in RUNNERS.values() if r.verify_default and (with_checkpoint or not r.needs_checkpoint)]


def bench_names() -> list[str]:
    return [r.name for r in RUNNERS.values() if r.bench is not None]


def bench_families() -> list[str]:
    return list(dict.fromkeys(r.family for r in RUNNERS.values() if r.bench is not None))


def bench_providers() -> list[str]:
    """The devices `bench --provider` takes: those some bench row computes on."""
    return list(dict.fromkeys(r.provider for r in RUNNERS.values() if r.bench))


def bench_selection(runtimes, providers) -> list[RunnerInfo]:
    """The rows `bench --runtime ... --provider ...` runs. A runtime is a family (onnxruntime, openvino,
    torch, ...): its rows on `providers`; or a runner's name (or alias): that row. None: every family's
    default rows on `providers`."""
    families = bench_families()
    chosen: list[RunnerInfo] = []
    for item in runtimes or ():
        key = resolve(item, dict.fromkeys(families + bench_names()), "bench runtime")
        if key in families:
            chosen += [r for r in RUNNERS.values() if r.family == key and r.bench and r.provider in providers]
        else:
            chosen.append(RUNNERS[key])
    if not runtimes:
        chosen = [r for r in RUNNERS.values() if r.bench and r.bench.default and r.provider in providers]
    return list({r.name: r for r in chosen}.values())


def render_markdown() -> str:
    """The runners as a Markdown table, for the README (python -m lstm_onnx.runtimes.registry)."""
    rows = ["| runner | what it is | capability row | needs a checkpoint | verify default | bench |",
            "|---|---|---|---|---|---|"]
    for r in RUNNERS.values():
        bench = "-" if r.bench is None else f"`{r.family}`" + ("" if r.bench.default else " (named only)")
        rows.append(f"| `{r.name}` | {r.about} | {f'`{r.capability}`' if r.capability else '-'} | "
                    f"{'yes' if r.needs_checkpoint else 'no'} | {'yes' if r.verify_default else 'no'} | {bench} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(render_markdown())
