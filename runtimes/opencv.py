"""OpenCV DNN (optional: pip install .[opencv]): cv2.dnn.readNetFromONNX on the CPU, the 5.x graph engine
where there is one. What it computes right is measured in tests/runtimes/test_opencv.py."""
from __future__ import annotations

import contextlib
import re

import numpy as np

from lstm_onnx.runtimes.base import Runner, RunnerError, RunnerUnavailable, error_message
from lstm_onnx.runtimes.onnx_graph import all_nodes, io_names

INSTALL = "pip install 'lstm-onnx-pipeline[opencv]' (or pip install opencv-python-headless)"


def cv_message(exc: Exception) -> str:
    """One line for a cv2.error, "(-215:Assertion failed) cond in f": its text also names the source file and
    may split what failed over "> " lines; exc.err and exc.func hold what failed and where."""
    head = next((ln for ln in str(exc).splitlines() if " error: " in ln), "").split(" error: ", 1)[-1]
    kind = re.match(r"\(-?\d+:[^)]*\)", head)
    detail = " ".join(str(getattr(exc, "err", "")).replace(">", " ").split()).strip(": ")
    func = str(getattr(exc, "func", "")).split("(")[0].split(" ")[-1]
    if not kind or not detail:  # not the usual layout: its first line as it is
        return (head or error_message(exc))[:300]
    return " ".join(part for part in (kind.group(0), detail, f"in {func}" if func else "") if part)[:300]


class OpenCVRunner(Runner):
    """Fed and read by the ONNX graph's input and output names (setInput per name, forward(outputs))."""

    name = "opencv"

    def __init__(self, model_path):
        super().__init__()
        self.model_path = model_path
        self.net = None

    def _activate(self):
        try:
            import cv2
        except ImportError:
            raise RunnerUnavailable(f"opencv is not installed; to install: {INSTALL}") from None
        self._inputs, self._outputs = _graph_io(self.model_path)
        # 5.x: the new graph engine by name (ENGINE_ORT would be ONNX Runtime itself); 4.x has no engines.
        engine = getattr(cv2.dnn, "ENGINE_OPENCV", None)
        try:
            with _import_warnings_off(cv2):  # the ops it lacks are our one-line error below, not its log
                if engine is None:
                    self.net = cv2.dnn.readNetFromONNX(str(self.model_path))
                else:
                    self.net = cv2.dnn.readNetFromONNX(str(self.model_path), engine)
        except cv2.error as exc:
            raise RunnerError(f"OpenCV could not import the model: {cv_message(exc)}") from None
        if self.net.empty():  # ops it has no layer for: only logged at import, raised at the first setInput
            raise RunnerError(f"OpenCV could not import the model: {_unsupported(self.model_path)}")

    def _input_names(self):
        if self.net is None:
            raise RunnerError(f"{self.name} is not active")
        return self._inputs

    def _infer(self, feeds):
        import cv2

        try:
            for name in self._inputs:
                self.net.setInput(np.ascontiguousarray(feeds[name]), name)
            outputs = self.net.forward(self._outputs)
        except cv2.error as exc:
            raise RunnerError(f"OpenCV failed during inference: {cv_message(exc)}") from None
        return {name: np.asarray(value) for name, value in zip(self._outputs, outputs)}

    def _deactivate(self):
        self.net = None


@contextlib.contextmanager
def _import_warnings_off(cv2):
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None:  # a build without cv2.utils.logging
        yield
        return
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        log.setLogLevel(level)


def _graph_io(model_path) -> tuple[list[str], list[str]]:
    import onnx

    try:
        graph = onnx.load(str(model_path), load_external_data=False).graph
    except Exception as exc:  # a missing file, or protobuf's DecodeError
        raise RunnerError(f"opencv: cannot read {model_path}: {type(exc).__name__}") from None
    return io_names(graph)


def _unsupported(model_path) -> str:
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    others = sorted({f"{n.domain}.{n.op_type}" for n in all_nodes(graph) if n.domain not in ("", "ai.onnx")})
    return (f"it has no layer for {', '.join(others)}" if others
            else "it loaded an empty network (its log above names the unsupported operations)")
