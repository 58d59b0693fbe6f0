"""Everything the server can be tuned by, with the defaults `lstm-pipeline serve` uses."""
from __future__ import annotations

from dataclasses import dataclass, field

from lstm_onnx.serving.auth import check_token

ENGINES = ("uvicorn", "ray")


@dataclass
class ServeSettings:
    model: str = "artifacts/model-serve.onnx"
    host: str = "127.0.0.1"  # loopback unless asked; elsewhere, set auth_token
    port: int = 8000
    provider: str = "cpu"
    workers: int = 1  # inference threads running batches concurrently (one process: sessions live in it)
    threads: int = 1  # onnxruntime intra-op threads per run
    allow_tf32: bool = False  # CUDA: TF32 matmuls (results shift by about 2.5e-4)
    strict_placement: bool = False  # refuse to start if a node runs on another provider than requested
    max_batch: int = 64  # sequences per run; 1 turns batching off
    max_wait_ms: float = 2.0  # how long a partial batch waits for company
    max_queue: int = 1024  # sequences waiting; beyond it requests get 503 + Retry-After
    max_items: int = 256  # sequences per /v1/predict request
    max_seq_len: int = 1024  # steps per sequence (or per session step)
    max_body_bytes: int = 4 << 20
    session_ttl_s: float = 300.0  # idle time after which a session is dropped
    max_sessions: int = 1000
    max_sessions_per_client: int = 100  # open sessions/sequences one peer address may hold; beyond it 429
    graceful_timeout_s: float = 30.0  # in-flight requests get this long to finish on shutdown
    max_header_bytes: int = 64 << 10  # request line and headers; beyond it 431
    header_timeout_s: float = 10.0  # a request's headers must arrive within this of its first byte, else 408
    body_timeout_s: float = 30.0  # and its whole body within this of its headers, else 408
    max_connections: int = 512  # open connections; a request on one more gets 503 + Retry-After (probes excepted)
    max_buffered_bytes: int = 128 << 20  # request bodies being read or handled, all together; beyond it 503
    max_parse_queue: int = 32  # big bodies waiting for or in the parse process; beyond it 503
    queue_timeout_s: float = 10.0  # a sequence waiting longer in the batch queue gets 503, unrun; 0: no deadline
    engine: str = "uvicorn"  # "ray": Ray Serve replicas (serving/ray_app.py)
    replicas: int = 1  # --engine ray: model replicas (the autoscaler's minimum with max_replicas)
    max_replicas: int = 0  # --engine ray: above `replicas`, autoscale between the two
    target_ongoing: float = 2.0  # --engine ray, autoscaling: ongoing requests per replica it aims for
    model_name: str = ""  # the name /v2 serves the model under; "": the model file's stem
    grpc_port: int = 0  # the Open Inference Protocol over gRPC on this port too; 0: no gRPC
    auth_token: str | None = field(default=None, repr=False)  # Bearer token all routes but the probes need

    def __post_init__(self) -> None:
        for name in ("workers", "threads", "max_batch", "max_queue", "max_items", "max_seq_len",
                     "max_body_bytes", "max_sessions", "max_header_bytes", "max_sessions_per_client",
                     "max_connections", "max_buffered_bytes", "max_parse_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_wait_ms", "session_ttl_s", "graceful_timeout_s", "queue_timeout_s"):
            if not getattr(self, name) >= 0:  # NaN too
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("header_timeout_s", "body_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if 0 < self.queue_timeout_s <= self.max_wait_ms / 1000:
            raise ValueError(f"queue_timeout_s ({self.queue_timeout_s:g}) must be more than max_wait_ms "
                             f"({self.max_wait_ms:g} ms), or every batch that waits for company times out")
        if self.max_buffered_bytes < self.max_body_bytes:
            raise ValueError(f"max_buffered_bytes ({self.max_buffered_bytes}) must be at least max_body_bytes "
                             f"({self.max_body_bytes}), or no body of the largest size could ever be read")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.replicas < 1 or self.max_replicas < 0 or not self.target_ongoing > 0:
            raise ValueError(f"replicas must be >= 1, max_replicas >= 0 and target_ongoing > 0, got "
                             f"{self.replicas}, {self.max_replicas}, {self.target_ongoing}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if not 0 <= self.grpc_port <= 65535 or (self.grpc_port and self.grpc_port == self.port):
            raise ValueError(f"grpc_port must be 1..65535 and not the HTTP port (0: no gRPC), got {self.grpc_port}")
        if self.auth_token is not None:
            check_token(self.auth_token)
