"""The Runner interface: activate / infer / deactivate check state and feeds, then call `_impl` hooks."""
from __future__ import annotations

import abc
import time

import numpy as np


class RunnerError(RuntimeError):
    """A runner was used wrongly, or its runtime failed; the message says how to fix it."""


class RunnerUnavailable(RunnerError):
    """The runtime is not installed or cannot run this model; reported as skipped, not failed."""


class RunnerRefused(RunnerUnavailable):
    """The runtime is there, but refuses this model (it would compute it wrong, or lacks an op); skipped."""


def error_message(exc: BaseException, limit: int = 300) -> str:
    """One line for an exception a runtime raised: a RunnerError's own text, else its type and first line."""
    if isinstance(exc, RunnerError):
        return str(exc)[:limit]
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)[:limit]


class Runner(abc.ABC):
    """Base class. Subclasses set `name`, implement `_infer` and `_input_names`, and may override
    `_activate` and `_deactivate`.

    Use as a context manager:  `with OnnxRuntimeRunner(path) as r: outputs = r.infer(feeds)`.
    """

    name = "runner"

    def __init__(self) -> None:
        self.is_active = False
        self.latencies_ms: list[float] = []

    # -- public API, state-checked
    def activate(self) -> "Runner":
        if self.is_active:
            raise RunnerError(f"{self.name} is already active; call deactivate() first")
        self._activate()
        self.is_active = True
        return self

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.is_active:
            raise RunnerError(f"{self.name} is not active; call activate() or use `with runner:`")
        self._check_feeds(feeds)
        start = time.perf_counter()
        outputs = self._infer(feeds)
        self.latencies_ms.append((time.perf_counter() - start) * 1e3)
        return outputs

    def deactivate(self) -> None:
        if not self.is_active:
            raise RunnerError(f"{self.name} is not active")
        self._deactivate()
        self.is_active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    @property
    def input_names(self) -> list[str]:
        """Names `infer` requires."""
        return self._input_names()

    # -- hooks
    def _activate(self) -> None:
        pass

    @abc.abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for `feeds` (already checked against `input_names`)."""

    def _deactivate(self) -> None:
        pass

    @abc.abstractmethod
    def _input_names(self) -> list[str]:
        """The feed names `infer` requires."""

    def _check_feeds(self, feeds: dict[str, np.ndarray]) -> None:
        expected = set(self.input_names)
        missing, extra = expected - set(feeds), set(feeds) - expected
        if missing or extra:
            raise RunnerError(f"{self.name}: feeds must be exactly {sorted(expected)}; "
                              f"missing {sorted(missing)}, unexpected {sorted(extra)}")
