"""ONNX Runtime, with execution providers chosen by short name (cpu, cuda, tensorrt, ...).

`OnnxRuntimeRunner` runs with numpy in and out, optionally profiling which provider ran each node.
`OnnxRuntimeBoundRunner` is the fast path: IOBinding keeps inputs and outputs on the device, and for
static-shape models CUDA graph capture replays the whole run as one launch.
"""
from __future__ import annotations

import ctypes.util
import os
import shutil
import tempfile

import numpy as np

from lstm_onnx.runtimes.base import Runner, RunnerError, RunnerUnavailable

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


class OnnxRuntimeRunner(Runner):
    def __init__(self, model, provider: str = "cpu", provider_options: dict | None = None,
                 session_options=None, *, threads: int | None = None, allow_tf32: bool = False,
                 profile: bool = False):
        """`model`: a path or serialized bytes. `profile`: record which provider ran each node
        (see `placements` after deactivate). `allow_tf32`: let CUDA use TF32 matmuls (looser tolerance)."""
        super().__init__()
        self.model = model
        self.provider = provider.lower()
        self.provider_options = dict(provider_options or {})
        self.session_options = session_options
        self.threads = threads
        self.allow_tf32 = allow_tf32
        self.profile = profile
        self.name = f"onnxruntime-{self.provider}"
        self.session = None
        self.placements = None  # list[NodePlacement] once a profiled session is deactivated
        self._profile_dir = None

    @property
    def requested_provider(self) -> str:
        return PROVIDERS.get(self.provider, self.provider)

    @property
    def uses_tf32(self) -> bool:
        return self.provider == "cuda" and provider_chain_tf32(self.provider_options, self.allow_tf32)

    def _make_session_options(self):
        import onnxruntime as ort

        so = self.session_options or ort.SessionOptions()
        if self.threads:
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
        if self.profile:
            self._profile_dir = tempfile.mkdtemp(prefix="ort-profile-")
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(self._profile_dir, "profile")
        return so

    def _activate(self):
        import onnxruntime as ort

        chain = provider_chain(self.provider, self.provider_options, self.allow_tf32)
        model = str(self.model) if not isinstance(self.model, bytes) else self.model
        try:
            self.session = ort.InferenceSession(model, sess_options=self._make_session_options(), providers=chain)
        except Exception as exc:  # onnxruntime raises its own exception types
            self._cleanup_profile()
            raise RunnerError(f"onnxruntime could not load the model: {str(exc).splitlines()[0]}") from None
        if chain[0][0] not in self.session.get_providers():
            # ORT drops a provider whose libraries fail to load and silently runs everything on CPU.
            self.session = None
            self._cleanup_profile()
            raise RunnerUnavailable(f"{chain[0][0]} failed to initialise (driver or libraries missing); "
                                    f"to install: {INSTALL_HINTS.get(self.provider, 'see onnxruntime docs')}")

    def _input_names(self):
        if self.session is None:
            raise RunnerError(f"{self.name} is not active")
        return [i.name for i in self.session.get_inputs()]

    def _infer(self, feeds):
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feeds)))

    def _deactivate(self):
        if self.profile and self.session is not None:
            from lstm_onnx.runtimes.placement import parse_profile

            self.placements = parse_profile(self.session.end_profiling())
            self._cleanup_profile()
        self.session = None

    def _cleanup_profile(self):
        if self._profile_dir:
            shutil.rmtree(self._profile_dir, ignore_errors=True)
            self._profile_dir = None


def provider_chain_tf32(options: dict, allow_tf32: bool) -> bool:
    return str(options.get("use_tf32", "1" if allow_tf32 else "0")) == "1"


def static_output_shapes(session, feeds: dict[str, np.ndarray]) -> dict[str, list[int]] | None:
    """Output shapes from the graph, with symbolic dims resolved from the inputs' actual shapes; None if any
    output dim cannot be resolved this way."""
    sizes = {}
    for inp in session.get_inputs():
        for dim, actual in zip(inp.shape, feeds[inp.name].shape):
            if isinstance(dim, str):
                sizes[dim] = actual
    shapes = {}
    for out in session.get_outputs():
        dims = [d if isinstance(d, int) else sizes.get(d) for d in out.shape]
        if any(d is None for d in dims):
            return None
        shapes[out.name] = dims
    return shapes


class OnnxRuntimeBoundRunner(OnnxRuntimeRunner):
    """IOBinding fast path: `bind(feeds)` copies inputs to the device once; `run_bound()` runs with inputs
    and outputs resident there (what a pipeline that keeps data on the GPU sees); `infer` = bind, run, fetch.

    `cuda_graph=True` adds CUDA graph capture (needs static shapes: the unrolled form, or fixed feeds).
    """

    def __init__(self, model, provider: str = "cuda", provider_options: dict | None = None, *,
                 cuda_graph: bool = False, device_id: int = 0, **kwargs):
        options = dict(provider_options or {})
        if cuda_graph:
            if provider != "cuda":
                raise RunnerError("CUDA graph capture needs provider cuda")
            options["enable_cuda_graph"] = "1"
        super().__init__(model, provider, options, **kwargs)
        self.cuda_graph = cuda_graph
        self.device_id = device_id
        self.name = f"onnxruntime-{self.provider}-iobinding" + ("+graph" if cuda_graph else "")
        self._binding = None
        self._bound: dict = {}
        self._outputs: dict = {}
        self._shapes: dict = {}

    @property
    def device(self) -> str:
        return "cuda" if self.provider in ("cuda", "tensorrt") else "cpu"

    def bind(self, feeds: dict[str, np.ndarray]) -> None:
        """Place `feeds` on the device. Same shapes as the last bind: copied into the same buffers (CUDA
        graphs replay on fixed addresses)."""
        import onnxruntime as ort

        self._check_feeds(feeds)
        shapes = {k: (v.shape, v.dtype) for k, v in feeds.items()}
        if self._binding is not None and shapes == self._shapes:
            for name, value in feeds.items():
                self._bound[name].update_inplace(np.ascontiguousarray(value))
            return
        if self._binding is not None and self.cuda_graph:
            raise RunnerError(f"{self.name}: a captured CUDA graph needs the same input shapes every run; "
                              f"make a new runner for other shapes")
        out_shapes = static_output_shapes(self.session, feeds)
        if out_shapes is None and self.cuda_graph:
            raise RunnerError(f"{self.name}: CUDA graph capture needs static output shapes; "
                              f"export with --form unrolled")
        binding = self.session.io_binding()
        # A copy: on CPU the OrtValue aliases the numpy array, and later binds write into it in place.
        self._bound = {k: ort.OrtValue.ortvalue_from_numpy(np.array(v, order="C", copy=True), self.device,
                                                           self.device_id) for k, v in feeds.items()}
        for name, value in self._bound.items():
            binding.bind_ortvalue_input(name, value)
        self._outputs = {}
        for out in self.session.get_outputs():
            if out_shapes is not None:
                dtype = _numpy_dtype(out.type)
                self._outputs[out.name] = ort.OrtValue.ortvalue_from_shape_and_type(
                    out_shapes[out.name], dtype, self.device, self.device_id)
                binding.bind_ortvalue_output(out.name, self._outputs[out.name])
            else:
                binding.bind_output(out.name, self.device, self.device_id)
        self._binding, self._shapes = binding, shapes

    def run_bound(self) -> None:
        """Run on the bound device buffers; returns when the outputs are ready."""
        if self._binding is None:
            raise RunnerError(f"{self.name}: call bind(feeds) first")
        self.session.run_with_iobinding(self._binding)

    def fetch(self) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        if self._outputs:
            return {n: self._outputs[n].numpy().copy() for n in names}  # on CPU .numpy() is a view
        return dict(zip(names, self._binding.copy_outputs_to_cpu()))

    def _infer(self, feeds):
        self.bind(feeds)
        self.run_bound()
        return self.fetch()

    def _deactivate(self):
        self._binding, self._bound, self._outputs, self._shapes = None, {}, {}, {}
        super()._deactivate()


def _numpy_dtype(ort_type: str):
    table = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
             "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}
    try:
        return table[ort_type]
    except KeyError:
        raise RunnerError(f"IOBinding: unsupported output type {ort_type}") from None
