"""OpenVINO (optional: pip install .[openvino]). Known: its ONNX frontend drops the LSTM peepholes (P)."""
from __future__ import annotations

import numpy as np

from lstm_onnx.runtimes.base import Runner, RunnerError, RunnerUnavailable

INSTALL = "pip install 'lstm-onnx-pipeline[openvino]' (or pip install openvino)"


def ov_message(exc: Exception) -> str:
    """OpenVINO's messages list where they were raised ("Exception from src/...", "Check ... failed at ..."),
    then what went wrong: the last line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


class OpenVINORunner(Runner):
    """Feeds and outputs by the ONNX graph's names: OpenVINO renames a port whose tensor an early node also
    writes (e.g. `lengths` becomes `cast_out`), so ports are matched by the names each one carries."""

    def __init__(self, model_path, device: str = "CPU", threads: int | None = None):
        super().__init__()
        self.model_path = model_path
        self.device = device.upper()
        self.threads = threads
        self.name = f"openvino-{self.device.lower()}"
        self.compiled = None

    def _activate(self):
        try:
            import openvino as ov
        except ImportError:
            raise RunnerUnavailable(f"openvino is not installed; to install: {INSTALL}") from None
        core = ov.Core()
        if self.device not in core.available_devices:
            raise RunnerUnavailable(f"OpenVINO device {self.device} not present (have: "
                                    f"{', '.join(core.available_devices)})")
        config = {"INFERENCE_NUM_THREADS": self.threads} if self.threads else {}
        if self.device == "CPU":
            config["INFERENCE_PRECISION_HINT"] = "f32"  # else bf16/fp16 on CPUs that have it
        try:
            self.compiled = core.compile_model(str(self.model_path), self.device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with long traces
            raise RunnerError(f"OpenVINO could not compile the model: {ov_message(exc)}") from None
        inputs, outputs = self._graph_io()
        self._inputs = [_port_name(p, inputs) for p in self.compiled.inputs]
        self._outputs = [_port_name(p, outputs) for p in self.compiled.outputs]
        self.request = self.compiled.create_infer_request()

    def _graph_io(self) -> tuple[list[str], list[str]]:
        import onnx

        from lstm_onnx.runtimes.onnx_graph import io_names

        return io_names(onnx.load(str(self.model_path), load_external_data=False).graph)

    def _input_names(self):
        if self.compiled is None:
            raise RunnerError(f"{self.name} is not active")
        return self._inputs

    def _infer(self, feeds):
        by_port = {k: np.ascontiguousarray(feeds[name]) for k, name in enumerate(self._inputs)}
        try:
            result = self.request.infer(by_port)
        except Exception as exc:  # RuntimeError with OpenVINO's trace
            raise RunnerError(f"OpenVINO failed during inference: {ov_message(exc)}") from None
        return {name: np.array(result[port]) for name, port in zip(self._outputs, self.compiled.outputs)}

    def _deactivate(self):
        self.compiled = self.request = None


def _port_name(port, wanted: list[str]) -> str:
    """The port's name as the ONNX graph calls it: OpenVINO merges tensor names and may report another."""
    names = port.get_names()
    return next((n for n in wanted if n in names), port.get_any_name())
