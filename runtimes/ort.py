"""ONNX Runtime, with execution providers chosen by short name (cpu, cuda, tensorrt, ...).

`OnnxRuntimeRunner` runs with numpy in and out on a session from runtimes/session.py (TF32 off, provider
and placement checked at activation).
`OnnxRuntimeBoundRunner` is the fast path: IOBinding keeps inputs and outputs on the device, and for
static-shape models CUDA graph capture replays the whole run as one launch.
"""
from __future__ import annotations

import numpy as np

from lstm_onnx.runtimes.base import Runner, RunnerError

# Re-exported: the provider helpers lived here before runtimes/providers.py.
from lstm_onnx.runtimes.providers import (  # noqa: F401
    INSTALL_HINTS,
    PROVIDERS,
    available_providers,
    provider_chain,
    provider_chain_tf32,
    resolve_provider,
    tensorrt_libraries_present,
)
from lstm_onnx.runtimes.session import numpy_dtype, open_session


class OnnxRuntimeRunner(Runner):
    def __init__(self, model, provider: str = "cpu", provider_options: dict | None = None,
                 session_options=None, *, threads: int | None = None, allow_tf32: bool = False,
                 profile: bool = True):
        """`model`: a path or serialized bytes. `profile`: check at activation which provider runs each node
        (`placements`, and `placement_problems` for nodes elsewhere than requested; see runtimes/session.py).
        `allow_tf32`: let CUDA use TF32 matmuls (looser tolerance)."""
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
        self.opened = None  # the runtimes.session.OrtSession while active
        self.placements = None  # list[NodePlacement] from the placement check at activation (profile=True)
        self.placement_problems: list[str] = []

    @property
    def requested_provider(self) -> str:
        return PROVIDERS.get(self.provider, self.provider)

    @property
    def uses_tf32(self) -> bool:
        return self.provider == "cuda" and provider_chain_tf32(self.provider_options, self.allow_tf32)

    def _activate(self):
        self.opened = open_session(self.model, self.provider, provider_options=self.provider_options,
                                   session_options=self.session_options, threads=self.threads,
                                   allow_tf32=self.allow_tf32, check_placement=self.profile, name=self.name)
        self.session = self.opened.session
        self.placements, self.placement_problems = self.opened.placements, self.opened.problems

    def _input_names(self):
        if self.session is None:
            raise RunnerError(f"{self.name} is not active")
        return [i.name for i in self.session.get_inputs()]

    def _infer(self, feeds):
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feeds)))

    def _deactivate(self):
        self.session = self.opened = None  # placements stay: they describe the session this runner ran


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
                dtype = numpy_dtype(out.type)
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
