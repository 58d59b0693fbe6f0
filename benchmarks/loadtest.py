"""Load test on loopback: N concurrent clients for T seconds against `lstm-pipeline serve`, batching on vs off.

    python benchmarks/loadtest.py artifacts/model-serve.onnx --clients 64 --seconds 10 [--body npy] [--json out.json]

Each mode starts its own server process on 127.0.0.1 (a free port), waits for /readyz, runs the clients
(one request = one small sequence), then stops it with SIGTERM. Bounded: --seconds per mode and at most
--max-requests per mode. Clients and server share this machine's cores, so absolute numbers are a floor.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np

MODES = {"batching on": ["--max-batch", "64", "--max-wait-ms", "2"],
         "batching off": ["--max-batch", "1", "--max-wait-ms", "0"]}


def npy_body(x: np.ndarray) -> tuple[bytes, str]:
    fp = io.BytesIO()
    np.save(fp, x.astype(np.float32))
    return fp.getvalue(), "application/x-npy"


BODIES = {"json": lambda x: (json.dumps({"inputs": x.tolist()}).encode(), "application/json"), "npy": npy_body}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lstm_onnx.cli", "-q", "serve", model, "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not become ready in 60 s")


class Connection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams. httpx costs more CPU per request than the
    server does, and clients share the machine with it, so a heavier client would measure itself."""

    def __init__(self, host: str, port: int):
        self.host, self.port, self.reader, self.writer = host, port, None, None

    async def post(self, path: str, body: bytes, content_type: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and "close" in value.lower():
                close = True
        await self.reader.readexactly(length)
        if close:
            await self.aclose()
        return int(status_line.split()[1])

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def run_clients(port: int, body: bytes, clients: int, seconds: float, max_requests: int,
                      content_type: str = "application/json") -> dict:
    latencies, errors, sent = [], 0, 0
    stop = time.perf_counter() + seconds

    async def one_client():
        nonlocal errors, sent
        conn = Connection("127.0.0.1", port)
        while time.perf_counter() < stop and sent < max_requests:
            sent += 1
            t0 = time.perf_counter()
            try:
                ok = await asyncio.wait_for(conn.post("/v1/predict", body, content_type), 30) == 200
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-requests", type=int, default=200_000, help="per mode")
    ap.add_argument("--seq", type=int, default=50, help="steps per request's sequence")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads in the server")
    ap.add_argument("--workers", type=int, default=1, help="the server's inference threads (both modes)")
    ap.add_argument("--body", choices=BODIES, default="json", help="request body format")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.clients < 1 or args.seconds <= 0 or args.seconds > 600:
        raise SystemExit("need --clients >= 1 and 0 < --seconds <= 600")
    info = None
    results = {}
    for mode, extra in MODES.items():
        port = free_port()
        proc = start_server(args.model, port, extra + ["--threads", str(args.threads),
                                                          "--workers", str(args.workers)])
        try:
            info = info or httpx.get(f"http://127.0.0.1:{port}/v1/model").json()
            x = np.random.default_rng(0).normal(size=(1, args.seq, info["num_features"])).round(4)
            body, content_type = BODIES[args.body](x)
            results[mode] = asyncio.run(run_clients(port, body, args.clients, args.seconds, args.max_requests,
                                                    content_type))
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            runs = float(metrics.split("\nlstm_batch_size_count ")[1].split()[0]) if "_count " in metrics else 0
            results[mode]["mean_batch"] = round(results[mode]["requests"] / runs, 1) if runs else None
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    print(f"{args.clients} clients x {args.seconds:g} s, 1 sequence of {args.seq} steps per request "
          f"({args.body} body), loopback, "
          f"{args.workers} inference thread(s) x {args.threads} onnxruntime thread(s)")
    print(f"{'mode':14} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'requests':>9} {'mean batch':>11}")
    for mode, r in results.items():
        print(f"{mode:14} {r['throughput_rps']:8.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['errors']:7d} "
              f"{r['requests']:9d} {r['mean_batch'] or 0:11.1f}")
    speedup = results["batching on"]["throughput_rps"] / max(results["batching off"]["throughput_rps"], 1e-9)
    print(f"throughput, batching on / off: {speedup:.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": results, "speedup": speedup}, fh, indent=2)


if __name__ == "__main__":
    main()
