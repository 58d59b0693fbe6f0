"""Training: reproducible, with early stopping, an LR schedule, gradient clipping and resume.

Each epoch ends with a validation pass; the best-validation weights are kept. Beside the checkpoint `out`,
`out.state` holds what resuming needs (last weights, optimizer, schedule, RNG states, history); it is
rewritten atomically after every epoch, so an interrupted run resumes from its last finished epoch.

Under an initialized process group (torchrun: `train --nproc N`) the same loop runs data-parallel; see
pipeline/distributed.py and docs/training.md. Checkpoints and states do not depend on the number of ranks.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lstm_onnx.core import threads as thread_policy
from lstm_onnx.pipeline import cell, kernel_choice
from lstm_onnx.pipeline import device as devices
from lstm_onnx.pipeline import distributed
from lstm_onnx.pipeline.checkpoint import Checkpoint, save_torch
from lstm_onnx.pipeline.config import RunConfig, run_config_from_dict
from lstm_onnx.pipeline.data import Dataset, load_dataset
from lstm_onnx.pipeline.metrics import split_metrics
from lstm_onnx.pipeline.model import SequenceModel

STATE_SUFFIX = ".state"


class ResumeError(ValueError):
    """The training state cannot continue this run; the message says why."""


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def loss_fn(config: RunConfig) -> nn.Module:
    return nn.CrossEntropyLoss() if config.model.head == "classify" else nn.MSELoss()


def state_path(out: str | Path) -> Path:
    return Path(str(out) + STATE_SUFFIX)


@torch.no_grad()
def predict(model: SequenceModel, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Model outputs for x [N, S, F], batch-major ([N, O] or [N, S, O]), in eval mode, on the model's device."""
    model.eval()
    where = next(model.parameters()).device
    outs = []
    for s in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[s:s + batch_size]).to(where)
        if not model.config.batch_first:
            xb = xb.transpose(0, 1)
        y = model(xb)[0]
        if model.config.head == "sequence" and not model.config.batch_first:
            y = y.transpose(0, 1)
        outs.append(y.cpu().numpy())
    return np.concatenate(outs)


@torch.no_grad()
def evaluate(model: SequenceModel, x: np.ndarray, y: np.ndarray, criterion, batch_size: int = 256) -> float:
    return float(criterion(torch.from_numpy(predict(model, x, batch_size)), torch.from_numpy(y)))


def _batch(model: SequenceModel, x: np.ndarray, y: np.ndarray, where: torch.device):
    """Tensors shaped for the model, on its device: x is stored [N, S, F]; time-major models get [S, N, F]."""
    xb = torch.from_numpy(x).to(where)
    yb = torch.from_numpy(y).to(where)
    if not model.config.batch_first:
        xb = xb.transpose(0, 1)
        if model.config.head == "sequence":
            yb = yb.transpose(0, 1)
    return xb, yb


def check_fit(config: RunConfig, data: Dataset) -> None:
    """The model's input and output sizes must match the data; say which key to change if not."""
    m = config.model
    features = data.train.x.shape[2]
    if m.input_size != features:
        raise ValueError(f"model.input_size is {m.input_size} but the data has {features} input feature(s) "
                         f"({', '.join(data.feature_names)}); set model.input_size = {features}")
    outputs = len(data.target_names)
    if m.output_size != outputs:
        what = "classes" if m.head == "classify" else "targets"
        raise ValueError(f"model.output_size is {m.output_size} but the data has {outputs} {what}; "
                         f"set model.output_size = {outputs}")
    classes = data.train.y.dtype.kind == "i"
    if classes != (m.head == "classify"):
        need = "classify" if classes else "last or sequence"
        raise ValueError(f"task {config.data.task!r} needs model.head = {need}, got {m.head!r}")
    if not classes and (data.train.y.ndim == 3) != (m.head == "sequence"):
        raise ValueError(f"task {config.data.task!r} has {'per-step' if data.train.y.ndim == 3 else 'one'} "
                         f"target(s) per sequence: model.head must be "
                         f"{'sequence' if data.train.y.ndim == 3 else 'last'}, got {m.head!r}")


def make_scheduler(config: RunConfig, opt: torch.optim.Optimizer):
    t = config.train
    if t.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t.epochs, eta_min=t.lr * t.min_lr_factor)
    if t.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2,
                                                          min_lr=t.lr * t.min_lr_factor)
    return None


def load_state_config(path: str | Path) -> RunConfig:
    """The run config saved in a training-state file (what `train --resume` continues)."""
    path = Path(path)
    if not path.is_file():
        raise ResumeError(f"no training state at {path}: `train -o CHECKPOINT` writes CHECKPOINT.state")
    try:
        return run_config_from_dict(torch.load(path, map_location="cpu", weights_only=True)["config"])
    except Exception as exc:  # a corrupt file raises many types
        raise ResumeError(f"{path} is not a readable training state ({type(exc).__name__})") from None


class _Run:
    """The mutable state of one training run: what `out.state` saves and resume restores."""

    def __init__(self, config: RunConfig, model: SequenceModel, world: distributed.World, where: torch.device,
                 batch: int):
        self.config = config
        self.where = where
        self.batch = batch  # per rank: distributed.per_rank_batch of the config's global batch
        self.model = model.to(where)  # the bare module: what is saved, evaluated and restored
        self.net: nn.Module = model  # what the training step calls: the DDP wrapper when data-parallel
        self.world = world
        self.opt = torch.optim.Adam(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
        self.scheduler = make_scheduler(config, self.opt)
        self.gen = torch.Generator().manual_seed(config.train.seed)
        self.epoch = 0
        self.best_val = float("inf")
        self.best_state = copy.deepcopy(model.state_dict())
        self.best_epoch = 0
        self.bad_epochs = 0
        self.history: list[dict] = []
        self.elapsed = 0.0

    def state(self) -> dict:
        """Everything on the CPU (devices.to_cpu), so that a state written on a GPU resumes anywhere."""
        return devices.to_cpu({
            "config": dataclasses.asdict(self.config), "epoch": self.epoch, "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(), "scheduler": self.scheduler.state_dict() if self.scheduler else {},
            "generator": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
            "best_val": self.best_val, "best_state": self.best_state, "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs, "history": self.history, "elapsed": self.elapsed})

    def save(self, path: Path) -> None:
        """Every rank calls this (its dropout stream is gathered); rank 0 writes."""
        streams = distributed.gather_objects(torch.get_rng_state(), self.world)
        extra = {"torch_rng_ranks": streams}
        if self.where.type == "cuda":  # dropout on a GPU draws from that GPU's generator
            cuda_streams = distributed.gather_objects(torch.cuda.get_rng_state(self.where), self.world)
            extra["cuda_rng_ranks"] = devices.to_cpu(cuda_streams)
        if self.world.main:
            save_torch({**self.state(), **extra}, path)

    def restore(self, path: Path) -> None:
        saved = load_state_config(path)
        s = torch.load(path, map_location="cpu", weights_only=True)
        if saved.model != self.config.model or saved.data != self.config.data:
            raise ResumeError(f"{path} was trained with a different model or data config; resume needs the same")
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["optimizer"])
        if self.scheduler and s["scheduler"]:
            self.scheduler.load_state_dict(s["scheduler"])
            if isinstance(self.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
                self.scheduler.T_max = self.config.train.epochs  # --epochs may have changed on resume
        self.gen.set_state(s["generator"])
        self._restore_stream(s)
        self.epoch, self.best_val, self.best_state = s["epoch"], s["best_val"], s["best_state"]
        self.best_epoch, self.bad_epochs = s["best_epoch"], s["bad_epochs"]
        self.history, self.elapsed = s["history"], s["elapsed"]

    def _restore_stream(self, s: dict) -> None:
        """Rank 0 continues the saved (rank 0) stream; another rank its own when the state has one."""
        rank, streams = self.world.rank, s.get("torch_rng_ranks", [])
        if rank == 0:
            torch.set_rng_state(s["torch_rng"])
        elif rank < len(streams):
            torch.set_rng_state(streams[rank])
        else:
            torch.manual_seed(distributed.rank_seed(self.config.train.seed, rank, s["epoch"]))
        if self.where.type != "cuda":
            return
        cuda_streams = s.get("cuda_rng_ranks", [])
        if rank < len(cuda_streams):
            torch.cuda.set_rng_state(cuda_streams[rank], self.where)
        else:  # a state written on the CPU (or by fewer ranks): a fresh GPU stream for this rank and epoch
            torch.cuda.manual_seed(distributed.rank_seed(self.config.train.seed, rank, s["epoch"]))

    def stop_early(self) -> bool:
        p = self.config.train.patience
        return bool(p) and self.bad_epochs >= p


def train_step(net: nn.Module, opt: torch.optim.Optimizer, criterion, xb: torch.Tensor, yb: torch.Tensor,
               grad_clip: float) -> torch.Tensor:
    """One optimizer step on one batch (grad_clip 0: no clipping); returns the batch loss."""
    loss = criterion(net(xb)[0], yb)  # a mean per rank: DDP's gradient average is the global mean
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    opt.step()
    return loss


def _train_epoch(run: _Run, data: Dataset, criterion, progress: bool) -> float:
    cfg, model = run.config.train, run.model
    model.train()
    # every rank draws the same order (same generator state); each trains on its shard of it
    order = distributed.shard(torch.randperm(len(data.train.x), generator=run.gen).numpy(), run.world)
    step = run.batch
    bar = tqdm(range(0, len(order), step), desc=f"epoch {run.epoch}/{cfg.epochs}",
               disable=None if progress and run.world.main else True, leave=False)  # None: no bar off a tty
    total = 0.0
    for s in bar:
        idx = order[s:s + step]
        xb, yb = _batch(model, data.train.x[idx], data.train.y[idx], run.where)
        value = train_step(run.net, run.opt, criterion, xb, yb, cfg.grad_clip).item()
        total += value * len(idx)
        bar.set_postfix(loss=f"{value:.4f}")
    total, count = distributed.sum_across(total, len(order), world=run.world)
    return total / count


def _val_loss(run: _Run, data: Dataset, criterion) -> float:
    """The validation loss of the whole split; data-parallel, each rank scores a slice and the sums are
    added, so every rank gets the same value (early stopping and the plateau schedule agree)."""
    world = run.world
    if not world.distributed:
        return evaluate(run.model, data.val.x, data.val.y, criterion)
    part = np.array_split(np.arange(len(data.val.x)), world.size)[world.rank]
    x, y = data.val.x[part], data.val.y[part]
    loss = 0.0
    if len(part):
        summed = type(criterion)(reduction="sum")
        loss = float(summed(torch.from_numpy(predict(run.model, x)), torch.from_numpy(y)))
    count = len(part) if isinstance(criterion, nn.CrossEntropyLoss) else y.size  # what "mean" divides by
    loss, count = distributed.sum_across(loss, count, world=world)
    return loss / count


def train(config: RunConfig, out: str | Path | None = None, progress: bool = True,
          dataset: Dataset | None = None, log=print, resume: str | Path | None = None) -> Checkpoint | None:
    """Train from `config`; write the best-validation checkpoint to `out` (atomically) and return it.

    `resume`: a training-state file (`<checkpoint>.state`) to continue from, up to `config.train.epochs`.
    A config that fails its checks (ValueError) is refused before anything is read or written.
    Under an initialized process group this rank trains its shard (docs/training.md); rank 0 logs, writes
    and returns the checkpoint, the other ranks return None.
    """
    world = distributed.current()
    config.validate()  # values set after the config was made (e.g. --epochs) get the checks a file's get
    batch = distributed.per_rank_batch(config.train.batch_size, world)  # refused before anything is read
    where = devices.resolve(config.train.device, world)
    devices.use(where)
    seed_everything(config.train.seed)
    if not world.main:
        def log(*_):
            pass
    data = dataset or load_dataset(config.data)
    check_fit(config, data)
    if len(data.train.x) < world.size:
        raise ValueError(f"{len(data.train.x)} training sequence(s) cannot be shared among {world.size} processes")
    threads = distributed.threads_for(world, config.train.threads) if world.distributed else config.train.threads
    if where.type == "cpu":  # on a GPU the step is the pure-PyTorch path: the compiled kernel is CPU-only
        distributed.build_kernel_once(world)
        choice = kernel_choice.choose(batch, config.model.input_size, config.model.hidden_size, threads=threads,
                                      dtype=torch.get_default_dtype(), measure=not world.distributed)
        cell.use_kernel(choice.kernel)  # forced or measured: an earlier run in this process may have chosen another
        threads = choice.threads
        log(f"training step: {choice.kernel} kernel, {threads} thread(s); {choice.reason}")
    torch.set_num_threads(threads or thread_policy.threads())
    run = _Run(config, SequenceModel(config.model), world, where, batch)
    if world.rank:
        torch.manual_seed(distributed.rank_seed(config.train.seed, world.rank))  # this rank's dropout stream
    if resume is not None:
        run.restore(Path(resume))
        log(f"resumed at epoch {run.epoch} (best val {run.best_val:.5f} at epoch {run.best_epoch})")
    if where.type == "cuda":
        log(f"device {where} ({torch.cuda.get_device_name(where)}), pure-PyTorch training step")
    if world.distributed:
        ids = [where.index] if where.type == "cuda" else None
        run.net = nn.parallel.DistributedDataParallel(run.model, device_ids=ids)
        n = len(data.train.x)
        log(f"data-parallel: {world.size} processes ({torch.distributed.get_backend()}), {threads} thread(s) "
            f"each, global batch {config.train.batch_size} = {world.size} x "
            f"{run.batch}; {n % world.size} of {n} training sequences left out "
            f"per epoch (a different remainder each epoch)")
    criterion = loss_fn(config)
    while run.epoch < config.train.epochs and not run.stop_early():
        run.epoch += 1
        start = time.perf_counter()
        lr = run.opt.param_groups[0]["lr"]
        train_loss = _train_epoch(run, data, criterion, progress)
        val_loss = _val_loss(run, data, criterion)
        if isinstance(run.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            run.scheduler.step(val_loss)
        elif run.scheduler:
            run.scheduler.step()
        improved = val_loss < run.best_val - config.train.min_delta
        if improved:
            run.best_val, run.best_epoch, run.bad_epochs = val_loss, run.epoch, 0
            run.best_state = copy.deepcopy(run.model.state_dict())
        else:
            run.bad_epochs += 1
        run.elapsed += time.perf_counter() - start
        run.history.append({"epoch": run.epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr})
        log(f"epoch {run.epoch:3d}  train {train_loss:.5f}  val {val_loss:.5f}  lr {lr:.2e}"
            + ("  *" if improved else ""))
        if out is not None:
            run.save(state_path(out))
    if run.stop_early():
        log(f"early stop: no val improvement for {config.train.patience} epochs (best epoch {run.best_epoch})")
    ckpt = _finish(run, data, criterion, out)
    distributed.barrier(run.world)  # the ranks leave together, after rank 0 has written the checkpoint
    return ckpt


def _finish(run: _Run, data: Dataset, criterion, out) -> Checkpoint | None:
    if not run.world.main:
        return None
    model, config = run.model, run.config
    model.load_state_dict(run.best_state)
    test = split_metrics(predict(model, data.test.x), data.test, config, data)
    metrics = {"best_val_loss": run.best_val, "best_epoch": run.best_epoch, "epochs_run": run.epoch,
               "stopped_early": run.stop_early(),
               "test_loss": evaluate(model, data.test.x, data.test.y, criterion),
               "test": test, "train_seconds": run.elapsed, "history": run.history}
    ckpt = Checkpoint(config, devices.to_cpu(model.state_dict()), data.normalization, data.feature_names,
                      data.target_names, metrics, data.columns, data.series_normalization)
    if out is not None:
        ckpt.save(out)
    return ckpt
