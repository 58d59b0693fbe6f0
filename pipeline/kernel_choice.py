"""Which training kernel (compiled C++ or pure PyTorch) and how many threads, chosen by measuring.

Neither kernel wins everywhere: on a 2-core AVX2 VM the compiled kernel was slower than the pure-PyTorch one
at 1 thread and H512, and 2 threads lose to 1 when the cores are shared. So on first use per machine and
shape class, `choose` times one training step (forward + backward) of each kernel at each candidate thread
count, interleaved, and keeps the fastest. The result is cached in `kernel_choice.json` beside the compiled
kernel (fastpath's cache folder), keyed by the machine (core/machine.short_key) and the shape class, so later
runs on the same machine pay nothing. Both kernels compute the same equations (tests/pipeline/test_fastpath.py).

Overrides: LSTM_PIPELINE_KERNEL=compiled | python (auto: measure, the default); `--threads` / train.threads
fixes the thread count, and only the kernel is measured at it.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from lstm_onnx.core import machine
from lstm_onnx.core import threads as thread_policy
from lstm_onnx.core.fileio import ArtifactWriteError, atomic_path

ENV = "LSTM_PIPELINE_KERNEL"
KERNELS = ("compiled", "python")
MEASURE_SEQ = 32  # a step's cost is linear in S; a shorter sequence keeps the first-use measurement ~1 s


@dataclass
class Choice:
    kernel: str  # "compiled" | "python"
    threads: int
    reason: str
    ms: dict = field(default_factory=dict)  # "kernel tN" -> median step ms, when measured


def mode(env=None) -> str:
    value = (os.environ if env is None else env).get(ENV, "auto").strip().lower() or "auto"
    if value not in KERNELS + ("auto",):
        raise ValueError(f"{ENV}={value!r}: use compiled, python or auto")
    return value


def shape_class(batch: int, input_size: int, hidden: int, dtype=torch.float32) -> str:
    """Shapes whose timings rank the kernels alike: dtype and each size rounded up to a power of two."""
    def up(n: int) -> int:
        return 1 << max(0, int(n) - 1).bit_length()

    return f"{str(dtype).removeprefix('torch.')} B{up(batch)} I{up(input_size)} H{up(hidden)}"


def thread_counts(usable: int) -> list[int]:
    """The counts worth timing: 1, the powers of two below the usable cores, and the usable cores."""
    return sorted({1, usable} | {1 << k for k in range(usable.bit_length()) if 1 << k < usable})


def cache_path():
    from lstm_onnx.pipeline import fastpath

    return fastpath.cache_root() / "kernel_choice.json"


def _read_cache() -> dict:
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, choice: Choice) -> None:
    cached = _read_cache()
    cached[key] = asdict(choice)
    with atomic_path(cache_path()) as tmp:
        tmp.write_text(json.dumps(cached, indent=1, sort_keys=True))


def choose(batch: int, input_size: int, hidden: int, *, threads: int = 0, dtype=torch.float32,
           measure: bool = True) -> Choice:
    """The kernel and thread count for training this shape here. `threads` > 0 fixes the count.
    `measure=False` (data-parallel ranks) takes the cached choice or the compiled default."""
    from lstm_onnx.pipeline import fastpath

    forced = mode()
    counts = [threads] if threads else thread_counts(thread_policy.usable_cores())
    if forced == "python":
        return Choice("python", counts[-1], f"{ENV}=python")
    if not fastpath.available():
        return Choice("python", counts[-1], f"compiled kernel unavailable ({fastpath.unavailable_reason()})")
    if forced == "compiled":
        return Choice("compiled", counts[-1], f"{ENV}=compiled")
    key = f"{machine.short_key()} | {shape_class(batch, input_size, hidden, dtype)} | " \
          f"threads {','.join(map(str, counts))}"
    hit = _read_cache().get(key)
    if hit and hit.get("kernel") in KERNELS:
        return Choice(hit["kernel"], int(hit["threads"]), f"cached: {hit['reason']}", hit.get("ms", {}))
    if not measure:
        return Choice("compiled", counts[-1], "not measured here (data-parallel rank); the compiled default")
    ms = measure_steps(batch, input_size, hidden, counts, dtype)
    best = min(ms, key=ms.get)
    kernel, t = best.split(" t")
    rest = ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(ms.items(), key=lambda kv: kv[1]))
    choice = Choice(kernel, int(t), f"measured one training step ({rest})", ms)
    try:
        _write_cache(key, choice)
    except ArtifactWriteError:  # a read-only cache still trains, and measures again next time
        pass
    return choice


def measure_steps(batch: int, input_size: int, hidden: int, counts, dtype=torch.float32, runs: int = 3) -> dict:
    """Median ms of one forward + backward step per "kernel tN", runs interleaved so that load hits all alike.
    Its own generator: the training's random streams are untouched. Restores torch's thread count."""
    from lstm_onnx.pipeline import fastpath
    from lstm_onnx.pipeline.cell import PeepholeLayerFunction

    g = torch.Generator().manual_seed(0)
    S, B, I, H = MEASURE_SEQ, batch, input_size, hidden
    x = torch.randn(S, B, I, generator=g, dtype=dtype)
    params = [(torch.randn(*shape, generator=g, dtype=dtype) * 0.1).requires_grad_()
              for shape in ((4 * H, I), (4 * H, H), (4 * H,), (3, H))]
    h0 = torch.zeros(B, H, dtype=dtype)
    kernels = {"compiled": fastpath.fused_lstm_layer, "python": PeepholeLayerFunction.apply}

    def step(fn):
        for p in params:
            p.grad = None
        y = fn(x, *params, h0, h0)[0]
        y.sum().backward()

    before = torch.get_num_threads()
    samples: dict[str, list[float]] = {f"{k} t{t}": [] for t in counts for k in kernels}
    try:
        for k in range(runs + 1):  # the first round warms up
            for name in samples:
                kernel, t = name.split(" t")
                torch.set_num_threads(int(t))
                t0 = time.perf_counter()
                step(kernels[kernel])
                if k:
                    samples[name].append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(before)
    return {name: statistics.median(v) for name, v in samples.items()}
