"""The `lstm-pipeline` command: one click group; each command parses, calls one library function, prints."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np


class Context:
    def __init__(self, quiet: bool):
        self.quiet = quiet

    def echo(self, msg: str = "", err: bool = False) -> None:
        if not self.quiet or err:
            click.echo(msg, err=err)


def _fail(msg: str) -> None:
    raise click.ClickException(msg)


def _load_ckpt(path):
    from pipeline.checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(path)
    except CheckpointError as exc:
        _fail(str(exc))


def _load_onnx(path):
    import onnx

    path = Path(path)
    if not path.is_file():
        _fail(f"model not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and others
        _fail(f"{path} is not a readable ONNX model ({type(exc).__name__}); export one with "
              f"`lstm-pipeline export`")
    if not model.graph.node:
        _fail(f"{path} is not an ONNX model (empty graph)")
    return model


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-q", "--quiet", is_flag=True, help="Print only results and errors.")
@click.version_option(package_name="lstm-onnx-pipeline", prog_name="lstm-pipeline")
@click.pass_context
def cli(ctx, quiet):
    """Peephole LSTMs from PyTorch to ONNX's native LSTM op, checked on every runtime.

    Typical flow: train -> export -> verify -> predict.
    """
    ctx.obj = Context(quiet)


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="A TOML run config.")
@click.option("-o", "--out", default="artifacts/model.pt", show_default=True, type=click.Path(dir_okay=False),
              help="Where to write the checkpoint.")
@click.option("--epochs", type=int, help="Override train.epochs.")
@click.option("--seed", type=int, help="Override train.seed and data.seed.")
@click.option("--no-peephole", is_flag=True, help="Train a plain LSTM (no peepholes).")
@click.pass_obj
def train(obj, config_path, out, epochs, seed, no_peephole):
    """Train a model on the built-in task (or --config) and write a checkpoint."""
    from pipeline.config import RunConfig, load_run_config
    from pipeline.train import train as run_train

    try:
        config = load_run_config(config_path) if config_path else RunConfig()
    except FileNotFoundError:
        _fail(f"config not found: {config_path}")
    except (ValueError, TypeError) as exc:
        _fail(f"bad config {config_path}: {exc}")
    if epochs is not None:
        config.train.epochs = epochs
    if seed is not None:
        config.train.seed = config.data.seed = seed
    if no_peephole:
        config.model.peephole = False
    try:
        ckpt = run_train(config, out, progress=not obj.quiet, log=obj.echo)
    except ValueError as exc:
        _fail(str(exc))
    m = ckpt.metrics
    obj.echo(f"best val loss {m['best_val_loss']:.5f}, test loss {m['test_loss']:.5f}, "
             f"{m['train_seconds']:.1f}s; wrote {out}")


@cli.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--out", default="artifacts/model.onnx", show_default=True, type=click.Path(dir_okay=False))
@click.option("--form", default="native", show_default=True, help="native: one LSTM op per layer, with P.")
@click.option("--stateful", is_flag=True, help="Add h0/c0 inputs and hn/cn outputs (streaming).")
@click.option("--lengths", is_flag=True, help="Add an int32 `lengths` input (ONNX sequence_lens).")
@click.option("--opset", type=int, help="Default-domain opset (default: the newest safe one).")
@click.pass_obj
def export(obj, checkpoint, out, form, stateful, lengths, opset):
    """Export CHECKPOINT to ONNX, validate it against PyTorch, then write it."""
    import time

    from exporters.export import ExportError, ExportOptions, export_checkpoint, file_sha256
    from exporters.opsets import OpsetError
    from exporters.validate import ValidationError

    ckpt = _load_ckpt(checkpoint)
    start = time.perf_counter()
    try:
        model = export_checkpoint(ckpt, out, ExportOptions(form, stateful, lengths, opset),
                                  checkpoint_sha256=file_sha256(checkpoint))
    except (ExportError, OpsetError, ValidationError) as exc:
        _fail(str(exc))
    lstm = sum(n.op_type == "LSTM" for n in model.graph.node)
    obj.echo(f"wrote {out}: {len(model.graph.node)} nodes, {lstm} LSTM, opset "
             f"{model.opset_import[0].version}, validated in {time.perf_counter() - start:.2f}s")


@cli.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--runner", "runners", multiple=True, help="Runners to check (default: all available).")
@click.option("--batch", default=4, show_default=True)
@click.option("--seq", default=23, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--atol", type=float, help="Absolute tolerance for every output (default by dtype).")
@click.option("--rtol", type=float, help="Relative tolerance for every output.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def verify(obj, checkpoint, model, runners, batch, seq, seed, atol, rtol, as_json):
    """Run MODEL on every available runner and compare each with CHECKPOINT's PyTorch model."""
    from runtimes.compare import Tolerances
    from runtimes.tolerances import Tolerance, default_tolerance
    from runtimes.verify import RUNNERS, verify_checkpoint

    ckpt = _load_ckpt(checkpoint)
    _load_onnx(model)
    base = default_tolerance("float32")
    tol = Tolerances(Tolerance(base.atol if atol is None else atol, base.rtol if rtol is None else rtol))
    try:
        report = verify_checkpoint(ckpt, model, runners or RUNNERS, batch, seq, seed, tol)
    except ValueError as exc:
        _fail(str(exc))
    click.echo(report.to_json() if as_json else report.to_table())
    if not report.passed:
        sys.exit(1)


def _read_array(path: Path) -> np.ndarray:
    if not path.is_file():
        _fail(f"input not found: {path}")
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        return np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as exc:
        _fail(f"cannot read {path}: {str(exc).splitlines()[0]} (expected numbers, comma-separated)")


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("inputs", type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(dir_okay=False), help=".npy or .csv (default: CSV to stdout).")
@click.option("--provider", default="cpu", show_default=True)
@click.option("--raw/--normalized", default=True, show_default=True,
              help="Raw features in, raw targets out (normalization from the model's metadata).")
@click.pass_obj
def predict(obj, model, inputs, out, provider, raw):
    """Run MODEL on INPUTS: a CSV of one sequence (rows = steps) or a .npy [batch, seq, features]."""
    from runtimes.base import RunnerError
    from runtimes.embed import Predictor, PredictorError

    _load_onnx(model)
    x = _read_array(Path(inputs))
    try:
        pred = Predictor.load(model, provider=provider)
        y = pred.predict(x if x.ndim == 3 else x[None], normalize=raw)
    except (PredictorError, RunnerError) as exc:
        _fail(str(exc))
    if out and out.endswith(".npy"):
        from pipeline.fileio import atomic_path

        with atomic_path(out) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, y)
        obj.echo(f"wrote {out} {list(y.shape)}")
    else:
        flat = y.reshape(-1, y.shape[-1])
        text = "\n".join(",".join(f"{v:.7g}" for v in row) for row in flat)
        if out:
            from pipeline.fileio import atomic_path

            with atomic_path(out) as tmp:
                tmp.write_text(text + "\n")
            obj.echo(f"wrote {out} {list(y.shape)}")
        else:
            click.echo(text)


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def inspect(model, as_json):
    """Show MODEL's I/O, nodes, LSTM attributes (P present?) and our metadata."""
    from runtimes.inspect import describe, format_description

    info = describe(_load_onnx(model))
    click.echo(json.dumps(info, indent=2) if as_json else format_description(info))


def main() -> None:
    cli(prog_name="lstm-pipeline")
