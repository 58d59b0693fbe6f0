"""Load test on loopback: N concurrent clients for T seconds against `lstm-pipeline serve`, batching on vs off.

    python benchmarks/loadtest.py artifacts/model-serve.onnx --clients 64 --seconds 10 [--body npy] [--json out.json]
    python benchmarks/loadtest.py MODEL --target v1 --target v2 --target v2-binary --target grpc --target grpc-stream
    python benchmarks/loadtest.py --url http://127.0.0.1:8000 --model-name NAME --target v2-binary  # any v2 server
    python benchmarks/loadtest.py MODEL --target v2 --target triton   # also MODEL under tritonserver (make triton-venv)
    python benchmarks/loadtest.py MODEL --target v1 --target ray      # also on Ray Serve, 1 and 2 replicas

Each mode starts its own server process on 127.0.0.1 (a free port), waits for /readyz, runs the clients
(one request = one small sequence) per target, then stops it with SIGTERM. With --url the clients hit that
running server instead (Triton, Ray Serve: anything speaking the targets' protocol). v1 is this script's own HTTP
client (TARGETS: (x [1, S, F], model name) -> (path, body, headers)); the v2 targets (LOADGEN: v2 JSON, v2 binary,
gRPC ModelInfer, one gRPC ModelStreamInfer stream per client) are serving/loadgen.py's clients, whose answers are
checked on a sample against a local Predictor of MODEL. Bounded: --seconds per mode and target and at most
--max-requests each. Clients and server share this machine's cores, so absolute numbers are a floor.

With MODEL, the model alone is measured too, at the start and at the end of the run: Predictor (threads=1) at
batch 64 (the served max batch) and --seq steps, in sequences/s; each row's served/model is its req/s x sequences
per request over the mean of the two.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import signal
import tempfile
import time

import httpx
import numpy as np

from lstm_onnx.core.machine import fingerprint, summary
from lstm_onnx.serving import loadgen
from lstm_onnx.serving.loadgen import Connection

MODES = {"batching on": ["--max-batch", "64", "--max-wait-ms", "2"],
         "batching off": ["--max-batch", "1", "--max-wait-ms", "0"]}


def npy_body(x: np.ndarray) -> tuple[bytes, str]:
    fp = io.BytesIO()
    np.save(fp, x.astype(np.float32))
    return fp.getvalue(), "application/x-npy"


BODIES = {"json": lambda x: (json.dumps({"inputs": x.tolist()}).encode(), "application/json"), "npy": npy_body}


def v1_request(x: np.ndarray, name: str, body: str = "json") -> tuple[str, bytes, dict]:
    raw, content_type = BODIES[body](x)
    return "/v1/predict", raw, {"Content-Type": content_type}


TARGETS = {"v1": v1_request}
# target -> (LoadSpec protocol, encoding, streaming)
LOADGEN = {"v2": ("http", "json", False), "v2-binary": ("http", "binary", False), "grpc": ("grpc", "binary", False),
           "grpc-stream": ("grpc", "binary", True)}
GRPC = [t for t, (protocol, _, _) in LOADGEN.items() if protocol == "grpc"]
BASELINE_BATCH = 64  # MODES["batching on"]'s --max-batch, Triton's max_batch_size
SEQUENCES_PER_REQUEST = 1


def predictor_rate(predictor, features: int, steps: int, seconds: float) -> dict:
    """The model alone: Predictor.predict on [64, steps, F] over and over for `seconds`, in sequences/s."""
    x = np.random.default_rng(1).normal(size=(BASELINE_BATCH, steps, features)).astype(np.float32).round(4)
    predictor.predict(x)  # the first run allocates
    runs, start = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - start < seconds:
        predictor.predict(x)
        runs += 1
    elapsed = time.perf_counter() - start
    return {"runs": runs, "seconds": round(elapsed, 3), "seq_per_s": round(runs * BASELINE_BATCH / elapsed, 1)}


def num_features(base: str, name: str) -> int:
    """From the v2 model metadata (x [-1, -1, F]); our server, Triton and the Ray ingress all answer it."""
    try:
        return asyncio.run(loadgen.num_features(loadgen.LoadSpec(url=base, model_name=name)))
    except loadgen.LoadTestError as exc:
        raise SystemExit(str(exc)) from None


@contextlib.contextmanager
def started(model: str, extra: list[str], **options):
    """`lstm-pipeline serve MODEL` on a free port for a `with` block; its failure to start ends the benchmark.
    Entered once here: `with` on an already entered StartedServer would start a second server and leak the first."""
    server = loadgen.StartedServer(model, extra, **options)
    try:
        server.__enter__()
    except loadgen.LoadTestError as exc:
        raise SystemExit(str(exc)) from None
    try:
        yield server
    finally:
        server.__exit__()


async def run_clients(host: str, port: int, request: tuple, clients: int, seconds: float, max_requests: int) -> dict:
    """`request`: (path, body, headers), sent by every client over and over."""
    path, body, headers = request
    latencies, errors, sent = [], 0, 0
    stop = time.perf_counter() + seconds

    async def one_client():
        nonlocal errors, sent
        conn = Connection(host, port)
        while time.perf_counter() < stop and sent < max_requests:
            sent += 1
            t0 = time.perf_counter()
            try:
                ok = (await asyncio.wait_for(conn.post(path, body, headers), 30))[0] == 200
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
                ok = False
                await conn.aclose()
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1
        await conn.aclose()

    start = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    return {"requests": len(latencies), "errors": errors, "seconds": round(elapsed, 2),
            "throughput_rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2)}


def measure_loadgen(url: str, target: str, name: str, args, predictor) -> dict:
    """One closed-loop step of serving/loadgen.py (`lstm-pipeline loadtest`'s clients) at --clients."""
    protocol, encoding, streaming = LOADGEN[target]
    spec = loadgen.LoadSpec(url=url, model_name=name, protocol=protocol, encoding=encoding, streaming=streaming,
                            steps=args.seq, batch=SEQUENCES_PER_REQUEST, seconds=args.seconds,
                            max_requests=args.max_requests)
    try:
        (step,) = loadgen.sweep(spec, [args.clients], (), predictor)["steps"]
    except loadgen.LoadTestError as exc:
        raise SystemExit(f"--target {target}: {exc}") from None
    keep = ("requests", "errors", "seconds", "throughput_rps", "p50_ms", "p99_ms", "checked", "wrong", "max_abs",
            "first_error")
    return {"client": "loadgen", **{k: step[k] for k in keep if k in step}}


def measure(base: str, targets: list, name: str, args, predictor=None, grpc: str | None = None) -> dict:
    """`grpc`: the server's gRPC host:port, for the gRPC targets."""
    out = {}
    for t in targets:
        if t in TARGETS:
            url = httpx.URL(base)
            x = np.random.default_rng(0).normal(size=(1, args.seq, num_features(base, name))).round(4)
            row = asyncio.run(run_clients(url.host, url.port or 80, TARGETS[t](x, name, args.body), args.clients,
                                          args.seconds, args.max_requests))
            out[t] = {"client": "own http", **row}
        else:
            out[t] = measure_loadgen(grpc if t in GRPC else base, t, name, args, predictor)
    return out


def mean_batch(base: str, requests: int) -> float | None:
    """Requests per model run, from our server's /metrics (None elsewhere)."""
    metrics = httpx.get(f"{base}/metrics").text
    runs = float(metrics.split("\nlstm_batch_size_count ")[1].split()[0]) if "lstm_batch_size_count " in metrics else 0
    return round(requests / runs, 1) if runs else None


def measure_triton(args, targets: list, predictor) -> dict:
    """The v2 and gRPC targets (v2 JSON without any) against tritonserver serving MODEL through our python-backend
    repository (serving/triton_python_repo.py), statelessly, batching as "batching on" does: up to 64
    sequences, 2 ms; --workers instances of --threads onnxruntime threads."""
    from lstm_onnx.serving.triton_options import TritonOptions
    from lstm_onnx.serving.triton_python_repo import write_python_repository
    from lstm_onnx.serving.tritonserver import TritonNotFound, TritonServer, TritonServerError, find_tritonserver

    protocols = [t for t in targets if t in LOADGEN] or ["v2"]
    options = TritonOptions(name=args.model_name, backend="python", max_batch_size=64, max_queue_delay_us=2000,
                            instance_count=args.workers)
    try:
        install = find_tritonserver(args.triton_venv)
        with tempfile.TemporaryDirectory() as repo:
            write_python_repository(args.model, repo, options, streams=False, threads=args.threads)
            with TritonServer(repo, install) as server:
                base, results, stats = f"http://{server.http_url}", {}, None
                for t in protocols:
                    # tritonserver can die under load (a SIGSEGV in the python backend's execute, seen with 64
                    # gRPC clients): the rows measured so far and the rest of the run still count
                    if server.proc.poll() is None:
                        try:
                            results[("triton python", t)] = measure(base, [t], args.model_name, args, predictor,
                                                                    f"127.0.0.1:{server.grpc_port}")[t]
                        except SystemExit:
                            if server.proc.poll() is None:
                                raise
                    if server.proc.poll() is not None:
                        failed = f"tritonserver exited ({server.proc.returncode}) during or before this target"
                        results[("triton python", t)] = {**results.get(("triton python", t), TRITON_DEAD),
                                                         "client": "loadgen", "failed": failed}
                    else:  # after each target: what the batch sizes were up to a crash still counts
                        stats = httpx.get(f"{base}/v2/models/{args.model_name}/stats").json()["model_stats"][0]
    except (TritonNotFound, TritonServerError, ValueError) as exc:
        raise SystemExit(f"--target triton: {exc}") from None
    for r in results.values():  # requests per model.py execute() over the whole run, as our mean batch
        r["mean_batch"] = round(stats["inference_count"] / max(stats["execution_count"], 1), 1) if stats else None
    return results


def _batch(mean) -> str:
    return "-" if mean is None else f"{mean:.1f}"  # None: the server's statistics could not be read


TRITON_DEAD = {"requests": 0, "errors": 0, "seconds": 0.0, "throughput_rps": 0.0, "p50_ms": float("nan"),
               "p99_ms": float("nan")}


def measure_ray(args, targets: list, replicas: int, predictor) -> dict:
    """The HTTP targets against `lstm-pipeline serve --engine ray --replicas N` (serving/ray_app.py), stopped with
    SIGINT, which shuts its Ray Serve and local Ray cluster down. No gRPC: Ray's ingress is HTTP only."""
    with started(args.model, ["--engine", "ray", "--replicas", str(replicas), *MODES["batching on"],
                              "--threads", str(args.threads), "--model-name", args.model_name],
                 ready_s=120, stop_signal=signal.SIGINT) as server:
        return {(f"ray x{replicas}", t): r
                for t, r in measure(f"http://127.0.0.1:{server.port}", targets, args.model_name, args,
                                    predictor).items()}


ENGINES = ("triton", "ray")  # --target names that start another engine rather than pick a protocol


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="the model to serve (not with --url)")
    ap.add_argument("--url", help="a running server's base URL, e.g. http://127.0.0.1:8000: no server started")
    ap.add_argument("--model-name", default="lstm", help="the v2 model name (servers started here use it)")
    ap.add_argument("--target", dest="targets", action="append", choices=[*TARGETS, *LOADGEN, *ENGINES],
                    help="protocol and body the clients send (repeatable; default v1); grpc: ModelInfer calls, "
                         "grpc-stream: one ModelStreamInfer stream per client (our server then also serves gRPC); "
                         "`triton` also serves MODEL under tritonserver (python backend) and sends it the v2 and "
                         "gRPC targets given, else v2; `ray` serves it on Ray Serve with each --ray-replicas count "
                         "(default 1 and 2), sent the HTTP targets given, else v1")
    ap.add_argument("--triton-venv", help="the venv with nvidia-pytriton (default: $LSTM_TRITON_VENV, else the "
                                          "repo's .venv-triton from `make triton-venv`)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-requests", type=int, default=200_000, help="per mode and target")
    ap.add_argument("--seq", type=int, default=50, help="steps per request's sequence")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads in the server")
    ap.add_argument("--workers", type=int, default=1, help="the server's inference threads (both modes)")
    ap.add_argument("--body", choices=BODIES, default="json", help="v1's request body format")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of: {', '.join(MODES)}")
    ap.add_argument("--ray-replicas", type=int, action="append", default=[], metavar="N",
                    help="also serve MODEL on Ray Serve (serve --engine ray) with N model replicas, batching on, "
                         "and run the targets against it (repeatable: --ray-replicas 1 --ray-replicas 2)")
    ap.add_argument("--baseline-seconds", type=float, default=2.0,
                    help="the model-only Predictor measurement, each of the two (start and end of the run)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    targets = args.targets or ["v1"]
    engines = [e for e in ENGINES if e in targets]
    targets = [t for t in targets if t not in ENGINES]
    ray_replicas = args.ray_replicas or ([1, 2] if "ray" in engines else [])
    if engines and args.url:
        raise SystemExit(f"--target {'/'.join(engines)} starts its own server: give MODEL, not --url")
    modes = [m.strip() for m in args.modes.split(",")]
    if args.clients < 1 or args.seconds <= 0 or args.seconds > 600 or not 0 < args.baseline_seconds <= 600:
        raise SystemExit("need --clients >= 1, 0 < --seconds <= 600 and 0 < --baseline-seconds <= 600")
    if (args.url is None) == (args.model is None) or any(m not in MODES for m in modes):
        raise SystemExit(f"give MODEL or --url (one of them), and --modes from {', '.join(MODES)}")
    if args.url and any(t in GRPC for t in targets):
        raise SystemExit(f"--target {'/'.join(t for t in targets if t in GRPC)} with --url: give MODEL (the gRPC "
                         "port is the started server's), or use `lstm-pipeline loadtest HOST:PORT --protocol grpc`")
    predictor, baseline = None, {}
    if args.model:
        from lstm_onnx.runtimes.embed import Predictor, PredictorError

        try:
            predictor = Predictor.load(args.model, threads=1, warn=False)
        except PredictorError as exc:
            raise SystemExit(f"{args.model}: {exc}") from None
        baseline["start"] = predictor_rate(predictor, predictor.num_features, args.seq, args.baseline_seconds)
    results = {}
    if args.url:
        for t, r in measure(args.url.rstrip("/"), targets, args.model_name, args).items():
            results[("external", t)] = r
    grpc = any(t in GRPC for t in targets)
    for mode in modes if not args.url and targets else ():
        with started(args.model, MODES[mode] + ["--threads", str(args.threads), "--workers", str(args.workers),
                                               "--model-name", args.model_name], grpc=grpc) as server:
            base = f"http://127.0.0.1:{server.port}"
            for t, r in measure(base, targets, args.model_name, args, predictor,
                                f"127.0.0.1:{server.grpc_port}").items():
                results[(mode, t)] = r
            runs_so_far = sum(r["requests"] for (m, _), r in results.items() if m == mode)
            for t in targets:  # one batch histogram per server: the mean over its targets
                results[(mode, t)]["mean_batch"] = mean_batch(base, runs_so_far)
    for n in ray_replicas if not args.url else ():
        results.update(measure_ray(args, [t for t in targets if t not in GRPC] or ["v1"], n, predictor))
    if "triton" in engines:
        results.update(measure_triton(args, targets, predictor))
    model_seq_s = None
    if predictor is not None:
        baseline["end"] = predictor_rate(predictor, predictor.num_features, args.seq, args.baseline_seconds)
        model_seq_s = round((baseline["start"]["seq_per_s"] + baseline["end"]["seq_per_s"]) / 2, 1)
        baseline.update(batch=BASELINE_BATCH, steps=args.seq, threads=1, seq_per_s=model_seq_s)
    for r in results.values():
        r["sequences_per_request"] = SEQUENCES_PER_REQUEST
        r["served_over_model"] = (round(r["throughput_rps"] * SEQUENCES_PER_REQUEST / model_seq_s, 6)
                                  if model_seq_s else None)
    machine = fingerprint()
    print(summary(machine))
    print(f"{args.clients} clients x {args.seconds:g} s, {SEQUENCES_PER_REQUEST} sequence of {args.seq} steps per "
          f"request, loopback, {args.workers} inference thread(s) x {args.threads} onnxruntime thread(s)")
    if model_seq_s:
        print(f"model only: Predictor (threads=1), batch {BASELINE_BATCH} x {args.seq} steps: "
              f"{baseline['start']['seq_per_s']:.1f} seq/s at the start, {baseline['end']['seq_per_s']:.1f} at the "
              f"end, mean {model_seq_s:.1f}")
    print(f"{'mode':14} {'target':12} {'client':9} {'req/s':>8} {'served/model':>12} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>7} {'requests':>9} {'checked':>8} {'wrong':>6} {'mean batch':>11}")
    for (mode, t), r in results.items():
        ratio = f"{r['served_over_model']:.1%}" if r["served_over_model"] is not None else "-"
        print(f"{mode:14} {t:12} {r['client']:9} {r['throughput_rps']:8.1f} {ratio:>12} {r['p50_ms']:8.2f} "
              f"{r['p99_ms']:8.2f} {r['errors']:7d} {r['requests']:9d} {r.get('checked', '-'):>8} "
              f"{r.get('wrong', '-'):>6} {_batch(r.get('mean_batch')):>11}")
    speedup = None
    if targets and ("batching on", targets[0]) in results and ("batching off", targets[0]) in results:
        speedup = (results[("batching on", targets[0])]["throughput_rps"]
                   / max(results[("batching off", targets[0])]["throughput_rps"], 1e-9))
        print(f"throughput, batching on / off ({targets[0]}): {speedup:.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": {f"{m} / {t}": r for (m, t), r in results.items()},
                       "baseline": baseline or None, "speedup": speedup, "machine": machine}, fh, indent=2)
    for (mode, t), r in results.items():
        if r.get("failed"):
            print(f"{mode} / {t}: {r['failed']}")
    wrong = sum(r.get("wrong", 0) for r in results.values())
    # tritonserver is measured, not ours to fix: its crash is a printed row, and the run fails on our servers only
    failed = [f"{m} / {t}" for (m, t), r in results.items() if r.get("failed") and not m.startswith("triton")]
    if failed:
        raise SystemExit(f"no (complete) measurement for {', '.join(failed)}: the server exited")
    if wrong:
        raise SystemExit(f"{wrong} answer(s) differ from the local Predictor of {args.model} beyond the tolerance")


if __name__ == "__main__":
    main()
