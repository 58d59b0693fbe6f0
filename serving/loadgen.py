"""A load generator for any Open Inference Protocol (v2) server, in the spirit of Triton's perf_analyzer: HTTP
(JSON or binary tensors) or gRPC, stateless requests or sequences, a concurrency or request-rate sweep. Each step
reports throughput and p50/p90/p99 latency, and a sample of the answers is checked against a local Predictor.

The HTTP client is a minimal keep-alive HTTP/1.1 client on asyncio streams, since clients share the machine with
the server and a heavier one (httpx) would measure itself; gRPC goes through the generated service classes that
tritonclient ships (no per-request wrapper objects)."""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import numpy as np

try:
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson comes with the serve extra
    _loads = json.loads


REQUEST_TIMEOUT_S = 30
# asyncio.timeout (3.11) arms a timer on the running task; wait_for wraps each request in a task of its own,
# which the generator pays for on the cores it shares with the server
TIMEOUT = getattr(asyncio, "timeout", None)


class LoadTestError(RuntimeError):
    """The load test cannot run as asked (no server, unknown model, bad option); one line saying why."""


@dataclass
class LoadSpec:
    url: str  # http://host:port (HTTP) or host:port (gRPC)
    model_name: str = "lstm"
    protocol: str = "http"  # http | grpc
    encoding: str = "binary"  # HTTP only: json | binary (Triton's binary tensor extension)
    streaming: bool = False  # gRPC: a client's requests over one ModelStreamInfer stream (perf_analyzer --streaming)
    steps: int = 50  # steps per sequence in a request
    batch: int = 1  # sequences per request
    chunks: int = 0  # > 0: sequences of this many requests each (sequence_id/start/end); 0: stateless requests
    seconds: float = 5.0  # per sweep step
    max_requests: int = 200_000  # per sweep step
    check_every: int = 50  # every Nth answer is kept for the check (0: none)
    seed: int = 0


@dataclass
class Step:
    concurrency: int | None
    rate: float | None
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list = field(default_factory=list, repr=False)
    samples: list = field(default_factory=list, repr=False)  # (x, or a stream's prefix, y) to check
    first_error: str = ""

    def summary(self) -> dict:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        pct = {f"p{p}_ms": round(float(np.percentile(lat, p)), 2) for p in (50, 90, 99)}
        return {"concurrency": self.concurrency, "rate": self.rate, "requests": self.requests,
                "errors": self.errors, "seconds": round(self.seconds, 2),
                "throughput_rps": round(self.requests / self.seconds, 1) if self.seconds else 0.0, **pct,
                "first_error": self.first_error}


# -- request bodies (HTTP)
def v2_http_body(x: np.ndarray, name: str, binary: bool, sequence: dict | None = None) -> tuple[str, bytes, dict]:
    """An infer request as tritonclient writes it: (path, body, headers)."""
    x = np.ascontiguousarray(x, np.float32)
    tensor = {"name": "x", "datatype": "FP32", "shape": list(x.shape)}
    tensor.update({"parameters": {"binary_data_size": x.nbytes}} if binary else {"data": x.ravel().tolist()})
    payload = {"inputs": [tensor], "outputs": [{"name": "y", "parameters": {"binary_data": binary}}]}
    if sequence:
        payload["parameters"] = sequence
    head = json.dumps(payload).encode()
    if not binary:
        return f"/v2/models/{name}/infer", head, {"Content-Type": "application/json"}
    return (f"/v2/models/{name}/infer", head + x.tobytes(),
            {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))})


def y_of_http(body: bytes, header_length: int | None) -> np.ndarray:
    head = _loads(body[:header_length] if header_length else body)
    out = next(o for o in head["outputs"] if o["name"] == "y")
    if header_length:
        return np.frombuffer(body[header_length:], np.float32).reshape(out["shape"])
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


class _Reply(asyncio.Protocol):
    """One keep-alive connection's bytes: complete responses are handed to the waiting post()."""

    def __init__(self):
        self.transport, self.buf, self.waiter, self.lost = None, bytearray(), None, None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is not None and not self.waiter.done():
            reply = self.complete()
            if reply is not None:
                self.waiter.set_result(reply)

    def connection_lost(self, exc) -> None:
        self.lost = exc or ConnectionResetError("the server closed the connection")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def complete(self) -> tuple | None:
        """(status, headers, body) once a whole response is buffered (and taken off the buffer), else None."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        got = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            got[name.strip().lower()] = value.strip()
        size = int(got.get("content-length", 0))
        if len(self.buf) < end + 4 + size:
            return None
        body = bytes(self.buf[end + 4:end + 4 + size])
        del self.buf[:end + 4 + size]
        return int(lines[0].split()[1]), got, body


class Connection:
    """A keep-alive HTTP/1.1 connection: post() -> (status, headers, body). An asyncio Protocol that parses a
    response from one buffer, since the generator's CPU is taken from the server it measures (a StreamReader
    costs a readline per header)."""

    def __init__(self, host: str, port: int):
        self.host, self.port, self.proto = host, port, None

    def request(self, path: str, body: bytes, headers: dict) -> bytes:
        """A POST's bytes on the wire, for exchange()."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n{extra}"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def post(self, path: str, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
        return await self.exchange(self.request(path, body, headers))

    async def exchange(self, request: bytes) -> tuple[int, dict, bytes]:
        """Send a whole request; (status, headers, body) of its response."""
        loop = asyncio.get_running_loop()
        if self.proto is None or self.proto.lost is not None:
            _, self.proto = await loop.create_connection(_Reply, self.host, self.port)
        proto = self.proto
        proto.waiter = loop.create_future()
        proto.transport.write(request)
        try:
            status, got, payload = await proto.waiter
        except asyncio.CancelledError:  # a timed-out request: its late response must not answer the next one
            await self.aclose()
            raise
        finally:
            proto.waiter = None
        if "close" in got.get("connection", "").lower():
            await self.aclose()
        return status, got, payload

    async def aclose(self) -> None:
        if self.proto is not None:
            self.proto.transport.close()
            self.proto = None


class HttpClient:
    def __init__(self, spec: LoadSpec):
        parts = urlsplit(spec.url if "//" in spec.url else f"http://{spec.url}")
        self.host, self.port, self.spec = parts.hostname or "127.0.0.1", parts.port or 80, spec
        self.conn = Connection(self.host, self.port)
        self.bodies: dict = {}  # id(x) -> request bytes: a stateless request's x comes from a fixed pool

    async def infer(self, x: np.ndarray, sequence: dict | None) -> np.ndarray:
        request = self.bodies.get(id(x)) if sequence is None else None
        if request is None:
            request = self.conn.request(*v2_http_body(x, self.spec.model_name, self.spec.encoding == "binary",
                                                      sequence))
            if sequence is None:
                self.bodies[id(x)] = request
        try:
            status, got, payload = await self.conn.exchange(request)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            await self.conn.aclose()
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from None
        if status != 200:
            raise ConnectionError(f"HTTP {status}: {payload[:200].decode('utf-8', 'replace')}")
        length = got.get("inference-header-content-length")
        return y_of_http(payload, int(length) if length else None)

    async def aclose(self) -> None:
        await self.conn.aclose()


class GrpcClient:
    """ModelInfer calls, or with spec.streaming one ModelStreamInfer stream carrying this client's requests one
    after another. Requests go out as bytes serialized once per x (the multicallables take bytes as they are)."""

    SERVICE = "/inference.GRPCInferenceService/"

    def __init__(self, spec: LoadSpec):
        import grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        self.grpc, self.pb, self.spec = grpc, service_pb2, spec
        self.channel = grpc.aio.insecure_channel(spec.url.split("//")[-1])
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.bodies: dict = {}  # id(x) -> serialized request: a stateless request's x comes from a fixed pool
        self.stream = None
        if spec.streaming:
            self.open = self.channel.stream_stream(self.SERVICE + "ModelStreamInfer", request_serializer=None,
                                                   response_deserializer=service_pb2.ModelStreamInferResponse.FromString)
        else:
            self.call = self.channel.unary_unary(self.SERVICE + "ModelInfer", request_serializer=None,
                                                 response_deserializer=service_pb2.ModelInferResponse.FromString)

    def request(self, x: np.ndarray, sequence: dict | None) -> bytes:
        pb = self.pb
        x = np.ascontiguousarray(x, np.float32)
        request = pb.ModelInferRequest(model_name=self.spec.model_name, raw_input_contents=[x.tobytes()],
                                       inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32",
                                                                                     shape=list(x.shape))])
        for key, value in (sequence or {}).items():
            param = request.parameters[key]
            if isinstance(value, bool):
                param.bool_param = value
            else:
                param.int64_param = value
        return request.SerializeToString()

    async def infer(self, x: np.ndarray, sequence: dict | None) -> np.ndarray:
        request = self.bodies.get(id(x)) if sequence is None else None
        if request is None:
            request = self.request(x, sequence)
            if sequence is None:
                self.bodies[id(x)] = request
        try:
            reply = await (self._streamed(request) if self.spec.streaming else self.call(request))
        except self.grpc.aio.AioRpcError as exc:
            self.stream = None
            raise ConnectionError(f"{exc.code().name}: {exc.details()}") from None
        except asyncio.CancelledError:  # a timed-out request: its late answer must not answer the next one
            if self.stream is not None:
                self.stream.cancel()
                self.stream = None
            raise
        return np.frombuffer(reply.raw_output_contents[0], np.float32).reshape(list(reply.outputs[0].shape))

    async def _streamed(self, request: bytes):
        if self.stream is None:
            self.stream = self.open()
        await self.stream.write(request)
        reply = await self.stream.read()
        if reply is self.grpc.aio.EOF:
            self.stream = None
            raise ConnectionError("the server ended the stream")
        if reply.error_message:
            raise ConnectionError(reply.error_message)
        return reply.infer_response

    async def aclose(self) -> None:
        if self.stream is not None:
            with contextlib.suppress(Exception):  # the server may be gone already
                await self.stream.done_writing()
            self.stream = None
        await self.channel.close()


CLIENTS = {"http": HttpClient, "grpc": GrpcClient}


async def num_features(spec: LoadSpec) -> int:
    """From the model's v2 metadata (x [-1, -1, F]), over the spec's protocol."""
    try:
        if spec.protocol == "grpc":
            client = GrpcClient(spec)
            try:
                meta = await client.stub.ModelMetadata(client.pb.ModelMetadataRequest(name=spec.model_name),
                                                       timeout=10)
            finally:
                await client.aclose()
            shape = next(list(t.shape) for t in meta.inputs if t.name == "x")
        else:
            client = HttpClient(spec)
            reader, writer = await asyncio.wait_for(asyncio.open_connection(client.host, client.port), 10)
            writer.write(f"GET /v2/models/{spec.model_name} HTTP/1.1\r\nHost: {client.host}\r\n"
                         f"Connection: close\r\n\r\n".encode())
            raw = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            status, _, body = raw.partition(b"\r\n\r\n")
            if b" 200 " not in status.split(b"\r\n")[0] + b" ":
                raise LoadTestError(f"{spec.url}: model {spec.model_name!r}: {body[:200].decode('utf-8', 'replace')}")
            shape = next(t["shape"] for t in json.loads(body)["inputs"] if t["name"] == "x")
    except (OSError, asyncio.TimeoutError) as exc:
        raise LoadTestError(f"no v2 server at {spec.url} ({exc.__class__.__name__}: {exc})") from None
    except Exception as exc:  # grpc's AioRpcError and a reply that is not v2 metadata alike
        if isinstance(exc, LoadTestError):
            raise
        raise LoadTestError(f"{spec.url} did not answer model {spec.model_name!r}'s v2 metadata "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    return int(shape[-1])


async def run_step(spec: LoadSpec, features: int, concurrency: int | None = None, rate: float | None = None) -> Step:
    """One sweep step: `concurrency` clients in a closed loop, or requests started at `rate` per second."""
    rng = np.random.default_rng(spec.seed)
    pool = [rng.normal(size=(spec.batch, spec.steps * max(spec.chunks, 1), features)).astype(np.float32).round(4)
            for _ in range(8)]
    step = Step(concurrency, rate)
    ids = itertools.count(1 + spec.seed * 1_000_000)
    stop = time.perf_counter() + spec.seconds
    count, kept = itertools.count(), itertools.count()

    async def one_request(client, x, sequence) -> np.ndarray | None:
        t0 = time.perf_counter()
        try:
            if TIMEOUT is None:  # Python 3.10
                y = await asyncio.wait_for(client.infer(x, sequence), REQUEST_TIMEOUT_S)
            else:
                async with TIMEOUT(REQUEST_TIMEOUT_S):
                    y = await client.infer(x, sequence)
        except (ConnectionError, asyncio.TimeoutError) as exc:
            step.errors += 1
            step.first_error = step.first_error or str(exc) or type(exc).__name__
            return None
        step.latencies_ms.append((time.perf_counter() - t0) * 1e3)
        step.requests += 1
        return y

    async def one_unit(client) -> None:
        """A stateless request, or a whole sequence of spec.chunks requests."""
        x = pool[next(count) % len(pool)]
        keep = spec.check_every and next(kept) % spec.check_every == 0
        if not spec.chunks:
            y = await one_request(client, x, None)
            if keep and y is not None:
                step.samples.append((x, y))
            return
        sid = next(ids)
        for k in range(spec.chunks):
            part = x[:, k * spec.steps:(k + 1) * spec.steps]
            y = await one_request(client, part, {"sequence_id": sid, "sequence_start": k == 0,
                                                 "sequence_end": k == spec.chunks - 1})
            if y is None:
                return
            if keep:
                step.samples.append((x[:, :(k + 1) * spec.steps], y))

    started = time.perf_counter()
    if concurrency is not None:
        async def closed_loop():
            client = CLIENTS[spec.protocol](spec)
            try:
                while time.perf_counter() < stop and step.requests + step.errors < spec.max_requests:
                    await one_unit(client)
            finally:
                await client.aclose()

        await asyncio.gather(*(closed_loop() for _ in range(concurrency)))
    else:
        idle: list = []
        tasks = set()

        async def open_unit():
            client = idle.pop() if idle else CLIENTS[spec.protocol](spec)
            try:
                await one_unit(client)
            finally:
                idle.append(client)

        k = 0
        while time.perf_counter() < stop and k < spec.max_requests:
            due = started + k / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.create_task(open_unit())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            k += 1
        await asyncio.gather(*tasks)
        for client in idle:
            await client.aclose()
    step.seconds = time.perf_counter() - started
    return step


def check(samples: list, predictor) -> dict:
    """Each kept answer against one pass of the local Predictor over the same (prefix of the) sequence."""
    from lstm_onnx.runtimes.tolerances import default_tolerance

    meta = predictor.meta
    tol = default_tolerance("int8" if meta.get("quantization") == "int8" else meta.get("dtype") or "float32")
    worst, wrong = 0.0, 0
    for x, y in samples:
        want = predictor.predict(x)
        if want.ndim == 3:  # a sequence head answers the steps of the last request only, not the whole prefix
            want = want[:, -y.shape[1]:] if y.ndim == 3 else want
        err = float(np.max(np.abs(want - y))) if want.shape == y.shape else float("inf")
        worst = max(worst, err)
        wrong += not (want.shape == y.shape and np.allclose(y, want, atol=tol.atol, rtol=tol.rtol))
    return {"checked": len(samples), "wrong": wrong, "max_abs": worst}


def _run(coro, spec: LoadSpec):
    """uvloop where it is installed (the server's loop too): the generator's own CPU is the server's loss."""
    try:
        from uvloop import run
    except ImportError:  # no uvloop, or one older than 0.18
        return asyncio.run(coro)
    return run(coro)


def sweep(spec: LoadSpec, concurrencies=(), rates=(), predictor=None, progress=None) -> dict:
    """Every step of the sweep: {"spec", "steps": [summary (+ check)]}."""
    if spec.streaming and spec.protocol != "grpc":
        raise LoadTestError("streaming is a gRPC option (ModelStreamInfer): use it with protocol grpc")
    if spec.protocol not in CLIENTS or spec.encoding not in ("json", "binary"):
        raise LoadTestError(f"protocol {spec.protocol!r} / encoding {spec.encoding!r}: choose http or grpc, "
                            "json or binary")
    if spec.chunks and spec.batch != 1:
        raise LoadTestError(f"a sequence request carries one stream: use batch 1 with sequences, not {spec.batch}")
    if spec.protocol == "grpc":
        try:
            import grpc  # noqa: F401
            from tritonclient.grpc import service_pb2  # noqa: F401
        except ImportError as exc:
            raise LoadTestError(f"--protocol grpc needs tritonclient[grpc] ({exc.name} missing): pip install "
                                "'lstm-onnx-pipeline[triton]'") from None
    features = _run(num_features(spec), spec)
    if predictor is not None and predictor.num_features != features:
        raise LoadTestError(f"the server's model takes {features} features, the --check model "
                            f"{predictor.num_features}: check against the model the server serves")
    out = []
    for concurrency, rate in [(c, None) for c in concurrencies] + [(None, r) for r in rates]:
        step = _run(run_step(spec, features, concurrency, rate), spec)
        summary = step.summary()
        if predictor is not None:
            summary.update(check(step.samples, predictor))
        out.append(summary)
        if progress:
            progress(summary)
    return {"spec": asdict(spec), "steps": out}


def table(result: dict) -> str:
    rows = [f"{'load':>12} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>7} {'checked':>8} "
            f"{'wrong':>6}"]
    for s in result["steps"]:
        load = f"c={s['concurrency']}" if s["concurrency"] is not None else f"{s['rate']:g}/s"
        rows.append(f"{load:>12} {s['throughput_rps']:9.1f} {s['p50_ms']:8.2f} {s['p90_ms']:8.2f} {s['p99_ms']:8.2f} "
                    f"{s['errors']:7d} {s.get('checked', '-'):>8} {s.get('wrong', '-'):>6}")
    return "\n".join(rows)


class StartedServer:
    """`lstm-pipeline serve MODEL` on a free loopback port for the length of a `with` (stderr to a temp file:
    a pipe nobody reads would block it)."""

    def __init__(self, model: str, extra: list[str], grpc: bool = False, ready_s: float = 60,
                 stop_signal: int = signal.SIGTERM):  # --engine ray: SIGINT, which shuts its local Ray down
        from lstm_onnx.serving.tritonserver import free_port

        self.port, self.grpc_port = free_port(), free_port() if grpc else 0
        self.cmd = [sys.executable, "-m", "lstm_onnx.cli", "-q", "serve", model, "--port", str(self.port), *extra]
        if grpc:
            self.cmd += ["--grpc-port", str(self.grpc_port)]
        self.ready_s, self.stop_signal = ready_s, stop_signal

    def __enter__(self) -> "StartedServer":
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        deadline = time.monotonic() + self.ready_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                lines = [line for line in self.log.read().splitlines() if line.strip()]
                raise LoadTestError(f"the server exited: {lines[-1] if lines else self.proc.returncode}")
            if self._ready():
                return self
            time.sleep(0.2)
        self.__exit__()
        raise LoadTestError(f"the server did not become ready in {self.ready_s:g} s")

    def _ready(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
