"""What a generated Triton model repository asks of Triton: batching, sequences and instances (docs/deploy.md)."""
from __future__ import annotations

from dataclasses import dataclass

BACKENDS = ("onnxruntime", "python")  # Triton's ONNX Runtime backend, or its python backend running our model.py
INSTANCE_KINDS = ("cpu", "gpu")
# The widest value each config.pbtxt field holds (ModelConfig's int32, uint32 and uint64 fields): a larger
# one would write a repository that Triton cannot parse.
INT32_MAX, UINT32_MAX, UINT64_MAX = 2**31 - 1, 2**32 - 1, 2**64 - 1


@dataclass(frozen=True)
class TritonOptions:
    name: str = "lstm"  # the model's folder and name in the repository
    backend: str = "onnxruntime"
    max_batch_size: int = 64  # sequences per batch Triton forms; every tensor is then batch-first
    preferred_batch_sizes: tuple[int, ...] = ()  # () lets the batcher form any size up to max_batch_size
    max_queue_delay_us: int = 2000  # how long the batcher waits to fill a batch
    max_queue_size: int = 1024  # requests waiting; beyond it Triton rejects (dynamic batching)
    instance_kind: str = "cpu"
    instance_count: int = 1
    gpus: tuple[int, ...] = ()  # with instance_kind "gpu": the devices; () is every GPU
    max_candidate_sequences: int = 64  # sequence batching (oldest): sequences in flight at once
    max_sequence_idle_us: int = 60_000_000  # a sequence with no request for this long is released

    def problems(self) -> list[str]:
        """One line per bad setting, each saying what to use instead."""
        out = []
        if self.backend not in BACKENDS:
            out.append(f"backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.instance_kind not in INSTANCE_KINDS:
            out.append(f"instance kind {self.instance_kind!r}: choose one of {', '.join(INSTANCE_KINDS)}")
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            out.append(f"model name {self.name!r}: use letters, digits, '-' and '_'")
        bad = [p for p in self.preferred_batch_sizes if not 1 <= p <= self.max_batch_size]
        if bad and 1 <= self.max_batch_size <= INT32_MAX:
            out.append(f"preferred batch sizes {bad}: each must be in 1..{self.max_batch_size}")
        if self.gpus and self.instance_kind != "gpu":
            out.append("gpus are for --instance-kind gpu")
        if any(not 0 <= g <= INT32_MAX for g in self.gpus):
            out.append(f"gpus {list(self.gpus)}: device ids are in 0..{INT32_MAX}")
        for field, value, low, high in (
                ("max batch size", self.max_batch_size, 1, INT32_MAX),
                ("instance count", self.instance_count, 1, INT32_MAX),
                ("max queue size", self.max_queue_size, 1, UINT32_MAX),
                ("max candidate sequences", self.max_candidate_sequences, 1, INT32_MAX),
                ("max queue delay (us)", self.max_queue_delay_us, 0, UINT64_MAX),
                ("max sequence idle (us)", self.max_sequence_idle_us, 0, UINT64_MAX)):
            if value < low:
                out.append(f"{field} {value}: must be >= {low}")
            elif value > high:
                out.append(f"{field} {value}: must be <= {high} (the most config.pbtxt holds)")
        return out
