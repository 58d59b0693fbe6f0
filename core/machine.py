"""The machine a result was measured on: one function, one shape, in every report (verify, bench,
bench-train, bench-ddp, the load test, an export's metadata, the server's /v1/model, `doctor`).

Cheap and torch-free: /proc/cpuinfo, affinity and the cgroup quota, package versions from their metadata
(nothing is imported but onnxruntime, for its providers, and only when installed).
"""
from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import platform
import sys
from pathlib import Path

from lstm_onnx.core import threads

ISA_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8")
PACKAGES = ("onnxruntime", "onnxruntime-gpu", "onnx", "torch", "openvino", "numpy")


def cpu_info(path: str | Path = "/proc/cpuinfo") -> dict:
    """{"model", "isa"}: the first processor's model name and which of ISA_FLAGS it has (Linux; elsewhere
    the platform's processor string and no flags)."""
    model, flags = None, set()
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
                if model is not None and flags:
                    break
    except OSError:
        pass
    return {"model": model or platform.processor() or platform.machine(),
            "isa": [f for f in ISA_FLAGS if f in flags]}


@functools.lru_cache(maxsize=1)
def versions() -> dict:
    """Installed versions of the runtimes and torch (absent ones are left out), Python and this package."""
    out = {"python": platform.python_version()}
    for name in ("lstm-onnx-pipeline",) + PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


@functools.lru_cache(maxsize=1)
def _providers() -> tuple[str, ...]:
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime

    return tuple(onnxruntime.get_available_providers())


def ort_providers() -> list[str]:
    return list(_providers())


def int8_path(isa) -> str | None:
    """Which path onnxruntime's u8 x s8 GEMM takes on a CPU with these ISA flags: "vnni" (VNNI or AMX: products
    summed exactly in int32), "avx2" (AVX2 / AVX-512BW: summed in pairs in saturating int16), or None."""
    isa = set(isa)
    if isa & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "vnni"
    return "avx2" if isa & {"avx2", "avx512bw"} else None


INT8_PATHS = {"vnni": "VNNI: u8 x s8 products summed exactly in int32",
              "avx2": "AVX2/AVX-512BW: u8 x s8 products summed in pairs in saturating int16, then int32",
              None: "no AVX2: onnxruntime's portable int8 kernel"}


def int8_gemm_path(isa) -> str:
    """int8_path in words, as doctor prints it."""
    return INT8_PATHS[int8_path(isa)]


def fingerprint(cpuinfo: str | Path = "/proc/cpuinfo", cgroup: str | Path = "/sys/fs/cgroup", *,
                process: bool = True) -> dict:
    """{"cpu": {model, isa, machine}, "cores": {logical, affinity, quota, usable}, "versions": {...},
    "ort_providers": [...], "threads": core.threads.in_force(), "platform": "Linux-..."}. `process=False`
    leaves out "threads", this process's settings: an export's metadata stays the same bytes on one machine."""
    affinity = threads.affinity_cores()
    quota = threads.cgroup_quota(cgroup)
    cpu = cpu_info(cpuinfo)
    cpu["machine"] = platform.machine()
    return {"cpu": cpu,
            "cores": {"logical": os.cpu_count(), "affinity": affinity, "quota": quota,
                      "usable": threads.usable_cores(affinity, quota, read_quota=False)},
            "versions": dict(versions()), "ort_providers": ort_providers(),
            **({"threads": threads.in_force()} if process else {}),
            "platform": f"{platform.system()}-{platform.release()}"}


def summary(fp: dict) -> str:
    """One line for a table's header: CPU, ISA, usable cores, versions, wait policy."""
    v = fp["versions"]
    ort = v.get("onnxruntime") or v.get("onnxruntime-gpu")
    parts = [fp["cpu"]["model"], "+".join(fp["cpu"]["isa"]) or "no AVX2",
             f"{fp['cores']['usable']} usable core(s)"]
    parts += [f"{name} {v[key]}" for name, key in (("torch", "torch"), ("onnx", "onnx"), ("openvino", "openvino"))
              if key in v]
    if ort:
        parts.append(f"onnxruntime {ort}")
    parts.append(f"OMP_WAIT_POLICY={fp['threads']['omp_wait_policy']}")
    return "machine: " + ", ".join(parts)


def short_key(fp: dict | None = None) -> str:
    """What makes timings comparable: CPU model, ISA, usable cores, torch version (a cache key). Without `fp`,
    from those parts alone (onnxruntime is not loaded)."""
    if fp is None:
        fp = {"cpu": cpu_info(), "cores": {"usable": threads.usable_cores()}, "versions": versions()}
    return "|".join([fp["cpu"]["model"], ",".join(fp["cpu"]["isa"]), str(fp["cores"]["usable"]),
                     fp["versions"].get("torch", "-"), sys.platform])
