"""Execution providers by short name (cpu, cuda, tensorrt, ...): which this build has, and the chain with its
options that an ORT session is opened with."""
from __future__ import annotations

import ctypes.util

from lstm_onnx.runtimes.base import RunnerError, RunnerUnavailable

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "rocm": "ROCMExecutionProvider",
}
INSTALL_HINTS = {
    "cuda": "pip install onnxruntime-gpu (and an NVIDIA driver)",
    "tensorrt": "pip install onnxruntime-gpu tensorrt (libnvinfer must be on the library path)",
    "openvino": "pip install onnxruntime-openvino",
    "dml": "pip install onnxruntime-directml",
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
        hint = INSTALL_HINTS.get(short.lower(), "install an onnxruntime build that has it")
        raise RunnerUnavailable(f"provider {short!r} is not in this onnxruntime build (available: "
                                f"{', '.join(have)}); to install: {hint}")
    if short.lower() == "tensorrt" and not tensorrt_libraries_present():
        raise RunnerUnavailable(f"TensorRT libraries (libnvinfer) not found; to install: {INSTALL_HINTS['tensorrt']}")
    return full


def tensorrt_libraries_present() -> bool:
    if ctypes.util.find_library("nvinfer"):
        return True
    for soname in ("libnvinfer.so.10", "libnvinfer.so.8", "nvinfer_10.dll", "nvinfer.dll"):
        try:
            ctypes.CDLL(soname)
            return True
        except OSError:
            continue
    return False


def provider_chain(short: str, options: dict, allow_tf32: bool) -> list[tuple[str, dict]]:
    """[(provider, options), ...] for InferenceSession. CUDA gets use_tf32=0 unless TF32 is allowed or set."""
    full = resolve_provider(short)
    options = {k: str(v) for k, v in options.items()}
    if short == "cuda":
        options.setdefault("use_tf32", "1" if allow_tf32 else "0")
    chain = [(full, options)]
    if short == "tensorrt" and "cuda" in available_providers():
        chain.append((PROVIDERS["cuda"], {"use_tf32": "1" if allow_tf32 else "0"}))
    return chain


def provider_chain_tf32(options: dict, allow_tf32: bool) -> bool:
    return str(options.get("use_tf32", "1" if allow_tf32 else "0")) == "1"
