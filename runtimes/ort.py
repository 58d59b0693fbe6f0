"""ONNX Runtime, with execution providers chosen by short name (cpu, cuda, tensorrt, ...)."""
from __future__ import annotations

from runtimes.base import Runner, RunnerError, RunnerUnavailable

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "rocm": "ROCMExecutionProvider",
}


def available_providers() -> list[str]:
    """Short names of the providers this onnxruntime build has."""
    import onnxruntime as ort

    full_to_short = {v: k for k, v in PROVIDERS.items()}
    return [full_to_short.get(p, p) for p in ort.get_available_providers() if p != "AzureExecutionProvider"]


def resolve_provider(short: str) -> str:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise RunnerUnavailable("onnxruntime is not installed: pip install onnxruntime") from None
    full = PROVIDERS.get(short.lower())
    have = available_providers()
    if full is None:
        raise RunnerError(f"unknown provider {short!r}; known: {', '.join(PROVIDERS)}")
    if short.lower() not in have:
        raise RunnerUnavailable(f"provider {short!r} is not in this onnxruntime build; available: "
                                f"{', '.join(have)} (for cuda: pip install onnxruntime-gpu)")
    return full


class OnnxRuntimeRunner(Runner):
    def __init__(self, model, provider: str = "cpu", provider_options: dict | None = None,
                 session_options=None):
        """`model`: a path or serialized bytes."""
        super().__init__()
        self.model = model
        self.provider = provider
        self.provider_options = provider_options or {}
        self.session_options = session_options
        self.name = f"onnxruntime-{provider}"
        self.session = None

    def _activate(self):
        import onnxruntime as ort

        full = resolve_provider(self.provider)
        model = str(self.model) if not isinstance(self.model, bytes) else self.model
        try:
            self.session = ort.InferenceSession(model, sess_options=self.session_options,
                                                providers=[(full, self.provider_options)])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise RunnerError(f"onnxruntime could not load the model: {str(exc).splitlines()[0]}") from None

    def _input_names(self):
        if self.session is None:
            raise RunnerError(f"{self.name} is not active")
        return [i.name for i in self.session.get_inputs()]

    def _infer(self, feeds):
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feeds)))

    def _deactivate(self):
        self.session = None
