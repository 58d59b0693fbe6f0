"""The one way this project opens an ONNX Runtime session (verify's runners, Predictor / serve / predict, the
bench worker, the forms report).

Every session gets:
- its provider by short name, with CUDA's TF32 off unless asked for (TF32 shifts results by about 2.5e-4);
- a check that the requested provider really loaded (ORT silently drops one whose libraries fail);
- a placement check at load: one profiled warm-up run on small zero feeds, read back from ORT's profile
  (`end_profiling()` stops profiling; the session stays as fast as an unprofiled one). A node that ran on
  another provider than requested becomes a problem whose message says how to fix it.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from lstm_onnx.core import threads as thread_policy
from lstm_onnx.runtimes.base import RunnerError, RunnerUnavailable
from lstm_onnx.runtimes.placement import NodePlacement, fallback_warnings, fallbacks, parse_profile, summarize
from lstm_onnx.runtimes.providers import INSTALL_HINTS, PROVIDERS, provider_chain, provider_chain_tf32


class SessionLoadError(RunnerError):
    """onnxruntime refused the model; `detail` is its message's first line."""

    def __init__(self, detail: str):
        super().__init__(f"onnxruntime could not load the model: {detail}")
        self.detail = detail


class PlacementWarning(UserWarning):
    """A node runs on another provider than the one requested."""


@dataclass
class OrtSession:
    session: object  # onnxruntime.InferenceSession
    requested: str  # short provider name, e.g. "cuda"
    providers: list[str]  # what the session runs with, in ORT's order
    tf32: bool
    placements: list[NodePlacement] | None  # None: not checked
    problems: list[str]
    settings: dict = field(default_factory=dict, repr=False)  # open_session's arguments: open a sibling alike

    @property
    def requested_full(self) -> str:
        return PROVIDERS.get(self.requested, self.requested)

    def placement_report(self) -> dict:
        """Nodes per provider, each LSTM node's provider, and the problems: what `/v1/model` shows."""
        placed = self.placements or []
        return {"requested": self.requested_full, "checked": self.placements is not None,
                "nodes": summarize(placed), "lstm": {p.node: p.provider for p in placed if p.op_type == "LSTM"},
                "problems": list(self.problems)}


def open_session(model, provider: str = "cpu", *, provider_options: dict | None = None, session_options=None,
                 threads: int | None = None, spinning: bool | None = None, allow_tf32: bool = False,
                 check_placement: bool = True, name: str | None = None) -> OrtSession:
    """`model`: a path or serialized bytes. `threads`: intra-op threads (0/None: the usable cores, from
    core/threads.py). `spinning=False` stops idle worker threads from busy-waiting (None: the wait policy's
    choice, no spinning unless OMP_WAIT_POLICY=ACTIVE). Raises RunnerError (unknown provider),
    RunnerUnavailable (provider missing or failed to load) or SessionLoadError."""
    import onnxruntime as ort

    short = provider.lower()
    options = dict(provider_options or {})
    settings = dict(provider=short, provider_options=options, session_options=session_options, threads=threads,
                    spinning=spinning, allow_tf32=allow_tf32, name=name)
    chain = provider_chain(short, options, allow_tf32)
    # A warm-up run outside IOBinding would capture a CUDA graph on the wrong buffers.
    check_placement = check_placement and str(options.get("enable_cuda_graph", "0")) != "1"
    so = session_options or ort.SessionOptions()
    if threads or not so.intra_op_num_threads:
        so.intra_op_num_threads = thread_policy.threads(threads)
        so.inter_op_num_threads = 1
    if not (thread_policy.spinning() if spinning is None else spinning):
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
        session = _create(ort, model, so, chain, tmp if check_placement else None)
        if chain[0][0] not in session.get_providers():
            # ORT drops a provider whose libraries fail to load and silently runs everything on CPU.
            raise RunnerUnavailable(f"{chain[0][0]} failed to initialise (driver or libraries missing); "
                                    f"to install: {INSTALL_HINTS.get(short, 'see onnxruntime docs')}")
        placements, problems = (_placement(session, model, short, chain[0][0], name or f"onnxruntime-{short}")
                                if check_placement else (None, []))
    return OrtSession(session, short, session.get_providers(), short == "cuda" and provider_chain_tf32(
        options, allow_tf32), placements, problems, settings)


def _create(ort, model, so, chain, profile_dir: str | None):
    was_profiling = so.enable_profiling
    if profile_dir:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(profile_dir, "profile")
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), sess_options=so,
                                    providers=chain)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise SessionLoadError(str(exc).splitlines()[0]) from None
    finally:
        so.enable_profiling = was_profiling  # the session keeps its own copy; the caller's object is left as given


def _placement(session, model, short: str, full: str, name: str) -> tuple[list[NodePlacement] | None, list[str]]:
    try:
        placements = profile_placements(session)
    except Exception as exc:  # onnxruntime's own types; the model may need inputs zeros cannot stand for
        return None, [f"{name}: placement not checked: the warm-up run on zero inputs failed "
                      f"({(str(exc).strip().splitlines() or [type(exc).__name__])[0]})"]
    misplaced = fallbacks(full, placements)
    graph = _onnx_model(model) if any(p.op_type == "LSTM" for p in misplaced) else None
    return placements, fallback_warnings(name, full, short, placements, graph)


WARMUP_RETRY_SIZE = 16  # symbolic dims for a second warm-up, for graphs that need more than one step (a Conv)


def profile_placements(session) -> list[NodePlacement]:
    """Run a session opened with profiling once on zero feeds, end its profiling, and read where each node ran.
    A model that cannot run one step (a user's Conv1d front end) gets a second try at WARMUP_RETRY_SIZE; the
    first try's failure is not logged by ORT."""
    import onnxruntime as ort

    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # fatal only: the retry decides whether the failure is worth reporting
    try:
        try:
            session.run(None, warmup_feeds(session), quiet)
        except Exception:  # onnxruntime's own error types
            session.run(None, warmup_feeds(session, WARMUP_RETRY_SIZE))
    finally:
        profile = session.end_profiling()
    return parse_profile(profile)


def warmup_feeds(session, size: int = 1) -> dict[str, np.ndarray]:
    """Zeros shaped like each input, symbolic dims as `size`. Integer inputs (our `lengths`) get 1: one valid
    step."""
    feeds = {}
    for inp in session.get_inputs():
        dims = [d if isinstance(d, int) and d > 0 else size for d in inp.shape]
        dtype = numpy_dtype(inp.type)
        feeds[inp.name] = (np.ones if np.issubdtype(dtype, np.integer) else np.zeros)(dims, dtype)
    return feeds


def _onnx_model(model):
    """The graph, to tell which LSTM nodes have P; None without the onnx package (the message is then less
    specific, the fix the same)."""
    try:
        import onnx
    except ImportError:
        return None
    if isinstance(model, bytes):
        return onnx.load_from_string(model)
    return onnx.load(str(model), load_external_data=False)


def settings_of(session) -> dict:
    """open_session arguments that reproduce a session opened elsewhere (its provider, options and threads)."""
    full_to_short = {v: k for k, v in PROVIDERS.items()}
    full = session.get_providers()[0]
    so = session.get_session_options()
    so.enable_profiling = False
    return dict(provider=full_to_short.get(full, full), provider_options=session.get_provider_options().get(full, {}),
                session_options=so)


def numpy_dtype(ort_type: str):
    table = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
             "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}
    try:
        return table[ort_type]
    except KeyError:
        raise RunnerError(f"unsupported tensor type {ort_type}") from None
