"""The training device (`train --device cpu|cuda|auto`, `train.device`): which one, checks, and moving off it.

On cuda the model and each batch live on the GPU and the training step is the pure-PyTorch autograd path
(cell.lstm_layer takes the compiled kernel only for CPU tensors). Saved tensors always go back to the CPU,
so a checkpoint or training state written on a GPU loads, resumes and exports on a CPU-only machine.
"""
from __future__ import annotations

import torch

from lstm_onnx.pipeline.distributed import World

NO_CUDA = "CUDA is not available: torch.cuda.is_available() is False; use --device cpu"


def kind(name: str) -> str:
    """cpu or cuda for `name` (auto: cuda when torch sees a GPU), without starting CUDA in this process.
    `name` is one of config.DEVICES: TrainConfig checks it when it is made or validated."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(NO_CUDA)
    return name


def resolve(name: str, world: World = World()) -> torch.device:
    """The torch.device for `name`: a cuda rank gets cuda:LOCAL_RANK, one process the current CUDA device
    (cuda:0 unless CUDA_VISIBLE_DEVICES or set_device says otherwise)."""
    if kind(name) == "cpu":
        return torch.device("cpu")
    if not world.distributed:
        return torch.device("cuda", torch.cuda.current_device())
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise ValueError(f"LOCAL_RANK {world.local_rank} has no GPU: this machine has {count} "
                         f"(torch.cuda.device_count()); start at most {count} process(es) per machine "
                         f"with --device cuda, or use --device cpu")
    return torch.device("cuda", world.local_rank)


def check_ranks(nproc: int, device_kind: str) -> None:
    """`--nproc N` on cuda needs a GPU per rank (nccl cannot share one GPU between ranks)."""
    if device_kind != "cuda":
        return
    count = torch.cuda.device_count()
    if nproc > count:
        raise ValueError(f"--nproc {nproc} with --device cuda needs {nproc} GPUs, this machine has {count} "
                         f"(torch.cuda.device_count()); use --nproc {count} or fewer, or --device cpu")


def use(device: torch.device) -> None:
    """Make a CUDA device this process's current one (nccl and CUDA RNG calls act on the current device)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


def to_cpu(obj):
    """obj with every tensor in it (nested dicts, lists, tuples) on the CPU; a CPU tensor is returned as is,
    so on the CPU nothing is copied. A state_dict keeps its type and its `_metadata`."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        out = type(obj)((k, to_cpu(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj
