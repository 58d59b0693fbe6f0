"""Training: short and reproducible. Progress bar per epoch, validation loss each epoch, best weights kept."""
from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from pipeline.checkpoint import Checkpoint
from pipeline.config import RunConfig
from pipeline.data import Dataset, load_dataset
from pipeline.model import SequenceModel


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def loss_fn(config: RunConfig) -> nn.Module:
    return nn.CrossEntropyLoss() if config.model.head == "classify" else nn.MSELoss()


@torch.no_grad()
def evaluate(model: SequenceModel, x: np.ndarray, y: np.ndarray, criterion, batch_size: int = 256) -> float:
    model.eval()
    total = 0.0
    for s in range(0, len(x), batch_size):
        xb, yb = _batch(model, x[s:s + batch_size], y[s:s + batch_size])
        total += criterion(model(xb)[0], yb).item() * len(xb if model.config.batch_first else yb)
    return total / len(x)


def _batch(model: SequenceModel, x: np.ndarray, y: np.ndarray):
    """Tensors shaped for the model: x is stored [N, S, F]; time-major models get [S, N, F]."""
    xb = torch.from_numpy(x)
    yb = torch.from_numpy(y)
    if not model.config.batch_first:
        xb = xb.transpose(0, 1)
        if model.config.head == "sequence":
            yb = yb.transpose(0, 1)
    return xb, yb


def train(config: RunConfig, out: str | Path | None = None, progress: bool = True,
          dataset: Dataset | None = None, log=print) -> Checkpoint:
    """Train from `config`; write the best-validation checkpoint to `out` (atomically) and return it."""
    seed_everything(config.train.seed)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    data = dataset or load_dataset(config.data)
    model = SequenceModel(config.model)
    criterion = loss_fn(config)
    opt = torch.optim.Adam(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    gen = torch.Generator().manual_seed(config.train.seed)
    best = (float("inf"), None)
    history = []
    start = time.perf_counter()
    for epoch in range(1, config.train.epochs + 1):
        model.train()
        order = torch.randperm(len(data.train.x), generator=gen).numpy()
        bs = config.train.batch_size
        batches = range(0, len(order), bs)
        bar = tqdm(batches, desc=f"epoch {epoch}/{config.train.epochs}", disable=not progress, leave=False)
        train_loss = 0.0
        for s in bar:
            idx = order[s:s + bs]
            xb, yb = _batch(model, data.train.x[idx], data.train.y[idx])
            loss = criterion(model(xb)[0], yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.train.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
            opt.step()
            train_loss += loss.item() * len(idx)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        val_loss = evaluate(model, data.val.x, data.val.y, criterion)
        history.append({"epoch": epoch, "train_loss": train_loss / len(order), "val_loss": val_loss})
        log(f"epoch {epoch:3d}  train {train_loss / len(order):.5f}  val {val_loss:.5f}")
        if val_loss < best[0]:
            best = (val_loss, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[1])
    metrics = {"best_val_loss": best[0], "test_loss": evaluate(model, data.test.x, data.test.y, criterion),
               "train_seconds": time.perf_counter() - start, "history": history}
    ckpt = Checkpoint(config, model.state_dict(), data.normalization, data.feature_names,
                      data.target_names, metrics)
    if out is not None:
        ckpt.save(out)
    return ckpt
