"""Compiled CPU kernel for one (peephole) LSTM layer: forward + hand-written backward.

The C++ source (``pipeline/csrc/peephole_lstm.cpp``) is built with ``torch.utils.cpp_extension.load`` at
first use and cached under ``$LSTM_PIPELINE_EXT_DIR`` or ``~/.cache/lstm-onnx-pipeline/ext``, in a folder
whose name hashes the source, the flags, torch/Python versions and (with ``-march=native``) the CPU's
feature flags. Later processes import the cached ``.so`` directly (no compiler or ninja needed then).
Concurrent builders are serialised with an ``fcntl`` lock; each build goes to a private temp folder that is
renamed into place, so a reader never sees a half-built extension.

If the build fails (no compiler, no ninja, ...) or ``LSTM_PIPELINE_NO_EXT=1`` is set, one notice line is
printed to stderr and :func:`available` returns False; callers then use the pure-PyTorch path.

Public API: :func:`available`, :func:`unavailable_reason`, :func:`fused_lstm_layer`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["available", "unavailable_reason", "fused_lstm_layer"]

_SRC = Path(__file__).resolve().parent / "csrc" / "peephole_lstm.cpp"
_OK_MARK = "BUILD_OK"

_lock = threading.Lock()
_tried = False
_ext = None
_reason: str | None = None


def cache_root() -> Path:
    """The compiled kernel's cache folder (and kernel_choice.json's)."""
    env = os.environ.get("LSTM_PIPELINE_EXT_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lstm-onnx-pipeline" / "ext"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    return " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return ""


def _compiler() -> str:
    return os.environ.get("CXX", "c++")


def _native_ok() -> bool:
    """-march=native only where the compiler accepts it and the build key can pin the CPU features."""
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if not _cpu_flags():
        return False
    try:
        r = subprocess.run([_compiler(), "-march=native", "-x", "c++", "-E", "-o", os.devnull, os.devnull],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        return r.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _flags() -> tuple[list[str], list[str], bool]:
    native = _native_ok()
    cflags = ["-O3", "-fopenmp"] + (["-march=native"] if native else [])
    return cflags, ["-fopenmp"], native


def _build_name(cflags: list[str], ldflags: list[str], native: bool) -> str:
    h = hashlib.sha256()
    h.update(_SRC.read_bytes())
    h.update(repr((cflags, ldflags, torch.__version__, sys.version_info[:2], platform.machine(),
                   torch._C._GLIBCXX_USE_CXX11_ABI)).encode())
    if native:
        h.update(_cpu_flags().encode())
    return "lstm_pipeline_peephole_" + h.hexdigest()[:16]


def _import_so(name: str, so_path: Path):
    spec = importlib.util.spec_from_file_location(name, str(so_path))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {so_path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _FileLock:
    """Exclusive inter-process lock (fcntl); a no-op where fcntl is missing (the rename keeps it safe)."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX
            return self
        self.fh = open(self.path, "a+")
        fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fh is not None:
            import fcntl

            fcntl.flock(self.fh.fileno(), fcntl.LOCK_UN)
            self.fh.close()
        return False


def _build_or_load():
    from torch.utils import cpp_extension

    cflags, ldflags, native = _flags()
    name = _build_name(cflags, ldflags, native)
    root = cache_root()
    final = root / name
    so_name = f"{name}.so"
    if (final / _OK_MARK).is_file() and (final / so_name).is_file():
        return _import_so(name, final / so_name)

    old_path = os.environ.get("PATH", "")
    bindir = os.path.dirname(sys.executable)  # ninja from the venv even when it is not activated
    if bindir and bindir not in old_path.split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + old_path
    try:
        if shutil.which(_compiler()) is None:
            raise RuntimeError(f"no C++ compiler ({_compiler()}) found")
        if not cpp_extension.is_ninja_available():
            raise RuntimeError("ninja not found")
        return _build_locked(cpp_extension, name, root, final, so_name, cflags, ldflags)
    finally:
        os.environ["PATH"] = old_path


def _build_locked(cpp_extension, name, root, final, so_name, cflags, ldflags):
    import logging

    root.mkdir(parents=True, exist_ok=True)
    with _FileLock(root / f"{name}.lock"):
        if (final / _OK_MARK).is_file() and (final / so_name).is_file():  # another process built it
            return _import_so(name, final / so_name)
        print("lstm-pipeline: building the compiled LSTM kernel (first use only; about a minute)",
              file=sys.stderr, flush=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{name}.tmp-", dir=str(root)))
        log = logging.getLogger("torch.utils.cpp_extension")  # keep the notice to one line
        old_level = log.level
        log.setLevel(logging.ERROR)
        try:
            mod = cpp_extension.load(
                name=name,
                sources=[str(_SRC)],
                extra_cflags=cflags,
                extra_ldflags=ldflags,
                build_directory=str(tmp),
                verbose=False,
            )
            (tmp / _OK_MARK).write_text(f"{torch.__version__} {' '.join(cflags)}\n")
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
            return mod
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            log.setLevel(old_level)


def _self_check(ext) -> None:
    """Tiny forward against the reference equations, so a miscompiled kernel is never used."""
    g = torch.Generator().manual_seed(0)
    S, B, I, H = 3, 2, 3, 20
    x = torch.randn(S, B, I, generator=g)
    w_ih = torch.randn(4 * H, I, generator=g) * 0.3
    w_hh = torch.randn(4 * H, H, generator=g) * 0.3
    bias = torch.randn(4 * H, generator=g) * 0.1
    peep = torch.randn(3, H, generator=g) * 0.3
    h = torch.randn(B, H, generator=g)
    c = torch.randn(B, H, generator=g)
    y = ext.forward(x, w_ih, w_hh, bias, peep, h, c)[0]
    for t in range(S):
        gi, gf, gg, go = (x[t] @ w_ih.t() + h @ w_hh.t() + bias).chunk(4, 1)
        i = torch.sigmoid(gi + peep[0] * c)
        f = torch.sigmoid(gf + peep[1] * c)
        c = f * c + i * torch.tanh(gg)
        h = torch.sigmoid(go + peep[2] * c) * torch.tanh(c)
        if not torch.allclose(y[t], h, atol=1e-5, rtol=1e-5):
            raise RuntimeError("self-check failed: compiled kernel disagrees with the reference")


def _short_message(e: BaseException) -> str:
    """One line: the first compiler 'error:' line if there is one, else the first line of the message."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    keys = ("error:", "not found", "no such file", "fatal")
    pick = next((ln for ln in lines if not ln.startswith("[") and any(k in ln.lower() for k in keys)), None)
    return (pick or (lines[0] if lines else type(e).__name__))[:240]


def _load() -> None:
    global _tried, _ext, _reason
    with _lock:
        if _tried:
            return
        _tried = True
        if os.environ.get("LSTM_PIPELINE_NO_EXT", "").strip() not in ("", "0"):
            _reason = "disabled by LSTM_PIPELINE_NO_EXT"
        else:
            try:
                ext = _build_or_load()
                _self_check(ext)
                _ext = ext
            except BaseException as e:  # noqa: BLE001 - never raise out of available()
                if isinstance(e, KeyboardInterrupt):
                    raise
                _reason = f"{type(e).__name__}: {_short_message(e)}"
        if _ext is None:
            print(f"lstm-pipeline: compiled LSTM kernel unavailable ({_reason}); using the pure-PyTorch path",
                  file=sys.stderr, flush=True)


def available() -> bool:
    """Whether the compiled kernel can be used; builds/loads it lazily on the first call. Never raises."""
    if not _tried:
        try:
            _load()
        except Exception:  # pragma: no cover - defensive
            return False
    return _ext is not None


def unavailable_reason() -> str | None:
    """Why the compiled kernel is unavailable (None when it is available or not yet tried)."""
    return _reason


def _force_generic(flag: bool) -> None:
    """Testing hook: route float32 through the generic at::mm path instead of oneDNN brgemm."""
    if available():
        _ext.set_force_generic(bool(flag))


def _brgemm_active() -> bool:
    return bool(available() and _ext.brgemm_active())


class _FusedLSTMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext, x, w_ih, w_hh, bias, peep, h0, c0):
        # gates/c/tanh(c) are saved unit-major ([4H, S, B], [S+1, H, B], [S, H, B]); h_S is not needed.
        y, h_n, c_n, gates, _h_all, c_all, tc_all = ext.forward(x, w_ih, w_hh, bias, peep, h0, c0)
        ctx.ext = ext
        ctx.save_for_backward(x, w_ih, w_hh, peep, h0, y, gates, c_all, tc_all)
        ctx.has_bias = bias is not None
        return y, h_n, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_n, dc_n):
        x, w_ih, w_hh, peep, h0, y, gates, c_all, tc_all = ctx.saved_tensors
        need = ctx.needs_input_grad[1:]
        dy = torch.zeros_like(y) if dy is None else dy
        dh_n = torch.zeros_like(h0) if dh_n is None else dh_n
        dc_n = torch.zeros_like(h0) if dc_n is None else dc_n
        need_dw = bool(need[1] or need[2] or need[3])
        dx, dw_ih, dw_hh, dbias, dpeep, dh0, dc0 = ctx.ext.backward(
            dy, dh_n, dc_n, x, w_ih, w_hh, peep, h0, y, gates, c_all, tc_all,
            ctx.has_bias, bool(need[0]), need_dw)
        return (None, dx if need[0] else None, dw_ih if need[1] else None, dw_hh if need[2] else None,
                dbias if need[3] else None, dpeep if need[4] else None,
                dh0 if need[5] else None, dc0 if need[6] else None)


def fused_lstm_layer(x: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Tensor | None, peep: Tensor | None,
                     h0: Tensor, c0: Tensor, *, ext=None) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer (forward direction) over time with the compiled kernel.

    x [S, B, I] float32/float64 CPU; w_ih [4H, I]; w_hh [4H, H]; bias [4H] (b_ih + b_hh) or None;
    peep [3, H] = (p_i, p_f, p_o) or None; h0, c0 [B, H]. Returns y [S, B, H], h_n [B, H], c_n [B, H].
    Differentiable w.r.t. every tensor input. Raises RuntimeError when :func:`available` is False.
    ``ext`` (benchmarks only) runs another build of the kernel, e.g. :func:`build_variant`'s.
    """
    if ext is None:
        if not available():
            raise RuntimeError(f"compiled LSTM kernel unavailable: {_reason}")
        ext = _ext
    args = [t.contiguous() if t is not None else None for t in (x, w_ih, w_hh, bias, peep, h0, c0)]
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args):
        return _FusedLSTMFunction.apply(ext, *args)
    y, h_n, c_n = ext.forward(*args)[:3]
    return y, h_n, c_n


def build_variant(src: str | os.PathLike, build_dir: str | os.PathLike):
    """Benchmarks only: build another kernel source (e.g. an older version) with the same flags into
    ``build_dir`` (a private folder, not the shared cache) and return the module."""
    from torch.utils import cpp_extension

    src = Path(src).resolve()
    cflags, ldflags, _native = _flags()
    name = "lstm_pipeline_variant_" + hashlib.sha256(src.read_bytes() + repr(cflags).encode()).hexdigest()[:12]
    out = Path(build_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    bindir = os.path.dirname(sys.executable)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    return cpp_extension.load(name=name, sources=[str(src)], extra_cflags=cflags, extra_ldflags=ldflags,
                              build_directory=str(out), verbose=False)
