"""The server under abuse, measured: its RSS through a flood of long-id sequences and through a flood of 4 MiB
bodies, and /healthz latency while many clients run inference.

    python benchmarks/abuse_figures.py MODEL [--sessions 250] [--bodies 150] [--clients 200] [--seconds 10]
                                             [--only sessions|bodies|healthz] [--json out.json]

Each part starts its own `lstm-pipeline serve MODEL` (default limits) on a free loopback port and stops it with
SIGTERM. RSS is the server process's VmRSS (the parse process is apart). Clients share the machine's cores with
the server, so latencies are an upper bound on a quiet machine's.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np

from lstm_onnx.core.machine import fingerprint, summary

MiB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, model: str, extra=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "lstm_onnx.cli", "serve", model, "--port", str(self.port), *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        model_info = httpx.get(self.url + "/v1/model").json()
        self.features = model_info["num_features"]
        self.name = model_info["path"].rsplit("/", 1)[-1].rsplit(".", 1)[0]

    def rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return kb / 1024

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def raw_post(path: str, body: bytes, keep: bool = False) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + ("" if keep else "Connection: close\r\n") + "\r\n").encode() + body


def read_status(s: socket.socket) -> int | str:
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        return type(exc).__name__
    return int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else "closed, no answer"


def sessions_flood(model: str, n: int) -> dict:
    """n v2 sequences from one client, each with a string id at the length cap (256), started and left open,
    then ended."""
    srv = Served(model)
    try:
        before = srv.rss_mib()
        statuses, ids = {}, [f"{k:06d}".ljust(256, "x") for k in range(n)]
        x = [0.5] * srv.features
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            def step(sid, start=False, end=False):
                body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, srv.features], "data": x}],
                        "parameters": {"sequence_id": sid, "sequence_start": start, "sequence_end": end}}
                return c.post(f"/v2/models/{srv.name}/infer", json=body).status_code

            for sid in ids:
                code = step(sid, start=True)
                statuses[code] = statuses.get(code, 0) + 1
            during = srv.rss_mib()
            ended = sum(step(sid, end=True) == 200 for sid in ids)
            big = step("y" * (3_900_000), start=True)  # the id length the cap refuses
        time.sleep(1)
        return {"sequences": n, "id_chars": 256, "start_statuses": statuses, "ended": ended,
                "a 3.9 MB id": big, "rss_mib": {"before": round(before, 1), "during": round(during, 1),
                                                 "after": round(srv.rss_mib(), 1)}}
    finally:
        srv.stop()


def body_of(features: int, size: int) -> bytes:
    step = b"[" + b", ".join([b"0.123456"] * features) + b"]"
    steps = max(1, (size - 16) // (len(step) + 2))
    sequences, per = max(1, steps // 1000), min(steps, 1000)
    seq = b"[" + b", ".join([step] * per) + b"]"
    return b'{"inputs": [' + b", ".join([seq] * sequences) + b"]}"


def bodies_flood(model: str, n: int) -> dict:
    """n connections at once, each sending a ~4 MiB /v1/predict body; RSS before, at its peak, and after."""
    srv = Served(model)
    body = body_of(srv.features, 4 * MiB - 4096)
    try:
        before, peak, stop = srv.rss_mib(), [0.0], threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], srv.rss_mib())
                time.sleep(0.02)

        statuses, lock = {}, threading.Lock()

        def client():
            try:
                with socket.create_connection(("127.0.0.1", srv.port), timeout=120) as s:
                    s.sendall(raw_post("/v1/predict", body))
                    code = read_status(s)
            except OSError as exc:
                code = type(exc).__name__
            with lock:
                statuses[code] = statuses.get(code, 0) + 1

        sampler = threading.Thread(target=sample)
        sampler.start()
        threads = [threading.Thread(target=client) for _ in range(n)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - start
        time.sleep(2)  # the trim runs off the loop once the bodies are freed
        stop.set()
        sampler.join()
        return {"connections": n, "body_bytes": len(body), "statuses": {str(k): v for k, v in statuses.items()},
                "seconds": round(took, 1), "rss_mib": {"before": round(before, 1), "peak": round(peak[0], 1),
                                                       "after": round(srv.rss_mib(), 1)}}
    finally:
        srv.stop()


async def inference_load(port: int, clients: int, seconds: float, features: int, out: dict) -> None:
    body = json.dumps({"inputs": [np.random.default_rng(0).normal(0, 1, (20, features)).round(4).tolist()]})
    raw = raw_post("/v1/predict", body.encode(), keep=True)

    async def one():
        deadline = time.monotonic() + seconds
        reader = writer = None
        while time.monotonic() < deadline:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                code = int(head.split()[1])
                if b"connection: close" in head.lower():
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError):
                code, writer = "error", None
            out[code] = out.get(code, 0) + 1

    await asyncio.gather(*(one() for _ in range(clients)))


def healthz_under_load(model: str, clients: int, seconds: float) -> dict:
    """`clients` keep-alive clients posting /v1/predict (one 20-step sequence) in a loop, from a child process;
    here a probe opens a new connection for GET /healthz every 50 ms, as a kubelet does, with a 1 s timeout
    (a raw socket: an HTTP client library's own set-up would be timed too)."""
    srv = Served(model)
    try:
        code = ("import asyncio, json, sys; sys.path.insert(0, 'benchmarks'); import abuse_figures as a; out = {}; "
                f"asyncio.run(a.inference_load({srv.port}, {clients}, {seconds}, {srv.features}, out)); "
                "print(json.dumps({str(k): v for k, v in out.items()}))")
        load = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        time.sleep(min(2.0, seconds / 4))  # the clients connect and the queue fills
        latencies, timeouts, end = [], 0, time.monotonic() + seconds - 3
        while time.monotonic() < end:
            start = time.perf_counter()
            try:
                with socket.create_connection(("127.0.0.1", srv.port), timeout=1.0) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    status = read_status(s)
                if status == "TimeoutError":
                    timeouts += 1
                elif status != 200:
                    raise SystemExit(f"/healthz answered {status}")
                else:
                    latencies.append(time.perf_counter() - start)
            except TimeoutError:  # no connection within the timeout
                timeouts += 1
            time.sleep(0.05)
        answers = json.loads(load.communicate(timeout=seconds + 60)[0])
        ms = np.array(latencies) * 1e3
        return {"clients": clients, "probes": len(ms) + timeouts, "timeouts": timeouts,
                "healthz_ms": {"p50": round(float(np.percentile(ms, 50)), 1),
                               "p99": round(float(np.percentile(ms, 99)), 1), "max": round(float(ms.max()), 1)},
                "inference_answers": answers}
    finally:
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--sessions", type=int, default=250)
    ap.add_argument("--bodies", type=int, default=150)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--only", choices=["sessions", "bodies", "healthz"], action="append")
    ap.add_argument("--json")
    a = ap.parse_args()
    parts = a.only or ["sessions", "bodies", "healthz"]
    result = {"machine": fingerprint()}
    print(summary(result["machine"]), flush=True)
    if "sessions" in parts:
        result["sessions"] = sessions_flood(a.model, a.sessions)
        print("sessions:", json.dumps(result["sessions"]), flush=True)
    if "bodies" in parts:
        result["bodies"] = bodies_flood(a.model, a.bodies)
        print("bodies:", json.dumps(result["bodies"]), flush=True)
    if "healthz" in parts:
        result["healthz"] = healthz_under_load(a.model, a.clients, a.seconds)
        print("healthz:", json.dumps(result["healthz"]), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
