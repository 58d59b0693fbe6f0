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
    from lstm_onnx.pipeline.checkpoint import CheckpointError, load_checkpoint

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
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="A TOML run config (configs/*.toml).")
@click.option("-o", "--out", default="artifacts/model.pt", show_default=True, type=click.Path(dir_okay=False),
              help="Where to write the checkpoint (its training state goes to OUT.state).")
@click.option("--epochs", type=int, help="Override train.epochs (with --resume: the new total).")
@click.option("--seed", type=int, help="Override train.seed and data.seed.")
@click.option("--no-peephole", is_flag=True, help="Train a plain LSTM (no peepholes).")
@click.option("--threads", type=int, help="Override train.threads (torch CPU threads; 0 = torch's default).")
@click.option("--resume", is_flag=True, help="Continue from OUT.state (config from there unless --config).")
@click.pass_obj
def train(obj, config_path, out, epochs, seed, no_peephole, threads, resume):
    """Train a model on the built-in task (or --config) and write a checkpoint."""
    from lstm_onnx.pipeline.config import RunConfig, load_run_config
    from lstm_onnx.pipeline.metrics import summary
    from lstm_onnx.pipeline.train import load_state_config, state_path
    from lstm_onnx.pipeline.train import train as run_train

    try:
        if config_path:
            config = load_run_config(config_path)
        else:
            config = load_state_config(state_path(out)) if resume else RunConfig()
    except FileNotFoundError:
        _fail(f"config not found: {config_path}")
    except (ValueError, TypeError) as exc:
        _fail(f"bad config {config_path}: {exc}" if config_path else str(exc))
    if epochs is not None:
        config.train.epochs = epochs
    if seed is not None:
        config.train.seed = config.data.seed = seed
    if no_peephole:
        config.model.peephole = False
    if threads is not None:
        config.train.threads = threads
    try:
        ckpt = run_train(config, out, progress=not obj.quiet, log=obj.echo,
                         resume=state_path(out) if resume else None)
    except ValueError as exc:
        _fail(str(exc))
    m = ckpt.metrics
    obj.echo(f"best val loss {m['best_val_loss']:.5f} (epoch {m['best_epoch']}), test {summary(m['test'])}, "
             f"{m['train_seconds']:.1f}s; wrote {out}")


@cli.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--out", default="artifacts/report", show_default=True, type=click.Path(file_okay=False),
              help="Folder for report.md, metrics.json and the PNG plots.")
@click.pass_obj
def report(obj, checkpoint, out):
    """Evaluate CHECKPOINT on its test split; write metrics and plots (loss curves, forecast vs actual)."""
    from lstm_onnx.pipeline.report import write_report

    ckpt = _load_ckpt(checkpoint)
    try:
        files = write_report(ckpt, out)
    except ValueError as exc:
        _fail(str(exc))
    for f in files:
        obj.echo(f"wrote {f}")


@cli.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--out", default="artifacts/model.onnx", show_default=True, type=click.Path(dir_okay=False))
@click.option("--form", default="native", show_default=True,
              type=click.Choice(["native", "decomposed", "unrolled", "auto"]),
              help="native: one LSTM op per layer, with P. decomposed: MatMul + Scan (no LSTM op). unrolled: "
                   "every step spelled out, static shapes (needs --seq-len). auto: chosen for --target.")
@click.option("--target", help="Runtime for --form auto (see README 'Export forms'), e.g. ort-cuda, openvino.")
@click.option("--seq-len", type=int, help="unrolled: the static sequence length.")
@click.option("--batch-size", type=int, help="unrolled: the static batch size (default 1).")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "float16"]),
              help="Precision of the computation (I/O stay float32); float16 needs decomposed or unrolled.")
@click.option("--quantize", type=click.Choice(["int8"]), help="Dynamic int8 quantization (onnxruntime).")
@click.option("--stateful", is_flag=True, help="Add h0/c0 inputs and hn/cn outputs (streaming).")
@click.option("--lengths", is_flag=True, help="Add an int32 `lengths` input (ONNX sequence_lens).")
@click.option("--opset", type=int, help="Default-domain opset (default: the newest safe one).")
@click.option("--via", default="graph", show_default=True, type=click.Choice(["graph", "torch.onnx"]),
              help="graph: built from the weights (fast). torch.onnx: traced by torch.onnx.export(dynamo=True); "
                   "native form only. Both are validated the same way.")
@click.pass_obj
def export(obj, checkpoint, out, form, target, seq_len, batch_size, dtype, quantize, stateful, lengths, opset,
           via):
    """Export CHECKPOINT to ONNX, validate it against PyTorch, then write it."""
    import time

    from lstm_onnx.exporters.export import ExportError, ExportOptions, export_checkpoint, export_summary, file_sha256
    from lstm_onnx.exporters.opsets import OpsetError
    from lstm_onnx.exporters.validate import ValidationError

    ckpt = _load_ckpt(checkpoint)
    start = time.perf_counter()
    options = ExportOptions(form, stateful, lengths, opset, target=target, seq_len=seq_len,
                            batch_size=batch_size, dtype=dtype, quantize=quantize, via=via)
    try:
        model = export_checkpoint(ckpt, out, options, checkpoint_sha256=file_sha256(checkpoint))
    except (ExportError, OpsetError, ValidationError) as exc:
        _fail(str(exc))
    obj.echo(f"wrote {out}: {export_summary(model)}, validated in {time.perf_counter() - start:.2f}s")


def _provider_options(items) -> dict[str, dict]:
    """--provider-option cuda:key=value (repeatable) -> {"cuda": {"key": "value"}}."""
    out: dict[str, dict] = {}
    for item in items:
        provider, sep, rest = item.partition(":")
        key, eq, value = rest.partition("=")
        if not (sep and eq and provider and key):
            _fail(f"--provider-option {item!r}: expected PROVIDER:KEY=VALUE, e.g. cuda:use_tf32=0")
        out.setdefault(provider.lower(), {})[key] = value
    return out


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="[CHECKPOINT] MODEL")
@click.option("--checkpoint", "checkpoint_opt", type=click.Path(dir_okay=False),
              help="A checkpoint: its PyTorch model becomes the default baseline.")
@click.option("--runner", "runners", multiple=True,
              help="Runners to check (repeatable; default: all). E.g. onnxruntime-cpu, onnxruntime-cuda, "
                   "onnxruntime-cuda-iobinding, onnxruntime-cuda-graph, onnxruntime-tensorrt, openvino-cpu, "
                   "onnx.reference, numpy, torch; `all` adds those known to compute this model wrongly.")
@click.option("--baseline", help="Runner to compare against (default: torch with a checkpoint, else "
                                 "onnxruntime-cpu).")
@click.option("--inputs", "inputs_npz", type=click.Path(dir_okay=False), help="Feeds from an .npz.")
@click.option("--expected", "expected_npz", type=click.Path(dir_okay=False),
              help="Compare against these saved outputs (.npz) instead of a baseline runner.")
@click.option("--save-inputs", type=click.Path(dir_okay=False), help="Write the feeds to an .npz.")
@click.option("--save-outputs", type=click.Path(dir_okay=False), help="Write the baseline's outputs to an .npz.")
@click.option("--batch", default=4, show_default=True)
@click.option("--seq", default=23, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--atol", type=float, help="Absolute tolerance for every output (default by dtype).")
@click.option("--rtol", type=float, help="Relative tolerance for every output.")
@click.option("--allow-tf32", is_flag=True, help="Let ORT CUDA use TF32 (compared at the looser tf32 tolerance).")
@click.option("--provider-option", "provider_options", multiple=True, metavar="PROVIDER:KEY=VALUE",
              help="Passed to the ORT provider, e.g. cuda:cudnn_conv_algo_search=DEFAULT (repeatable).")
@click.option("--strict-placement", is_flag=True, help="Fail if any node ran on a provider other than requested.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--markdown", is_flag=True, help="Print the report as Markdown.")
@click.pass_obj
def verify(obj, paths, checkpoint_opt, runners, baseline, inputs_npz, expected_npz, save_inputs, save_outputs,
           batch, seq, seed, atol, rtol, allow_tf32, provider_options, strict_placement, as_json, markdown):
    """Run MODEL on every available runner and compare each with a baseline.

    Works on any ONNX model with LSTM nodes; with a CHECKPOINT its PyTorch model is the baseline.
    Exit code 1 if any runner fails.
    """
    from lstm_onnx.runtimes.verify import VerifyOptions, explicit_tolerances, verify_model

    if len(paths) > 2:
        _fail("verify takes [CHECKPOINT] MODEL")
    checkpoint, model = (paths if len(paths) == 2 else (None, paths[0]))
    if checkpoint and checkpoint_opt:
        _fail("give the checkpoint once: as an argument or with --checkpoint")
    checkpoint = checkpoint or checkpoint_opt
    ckpt = _load_ckpt(checkpoint) if checkpoint else None
    _load_onnx(model)
    options = VerifyOptions(runners=tuple(runners) or None, baseline=baseline, batch=batch, seq=seq, seed=seed,
                            inputs=inputs_npz, expected=expected_npz, tolerances=explicit_tolerances(atol, rtol),
                            allow_tf32=allow_tf32, provider_options=_provider_options(provider_options),
                            strict_placement=strict_placement, save_inputs=save_inputs, save_outputs=save_outputs)
    try:
        report = verify_model(model, ckpt, options)
    except ValueError as exc:
        _fail(str(exc))
    click.echo(report.to_json() if as_json else report.to_markdown() if markdown else report.to_table())
    if not report.passed:
        sys.exit(1)


@cli.command()
@click.option("-o", "--out", "out_dir", default="artifacts/bench", show_default=True,
              type=click.Path(file_okay=False), help="Where bench.json, bench.md and bench.png go.")
@click.option("--input-size", default=64, show_default=True)
@click.option("--hidden", default=256, show_default=True)
@click.option("--layers", default=1, show_default=True)
@click.option("--case", "cases", multiple=True, metavar="NAME=BxS",
              help="Cases (repeatable; default: streaming=1x1 sequence=1x100 batch=64x100).")
@click.option("--threads", default="1,2", show_default=True, help="Comma-separated thread counts.")
@click.option("--form", "forms", multiple=True, help="Export forms (default: all).")
@click.option("--provider", "providers", multiple=True, help="ORT providers: cpu, cuda (default: cpu).")
@click.option("--runtime", "runtimes", multiple=True, type=click.Choice(["onnxruntime", "openvino", "torch"]),
              help="Runtimes (default: all three).")
@click.option("--min-time", default=0.3, show_default=True, help="Seconds of timed runs per cell.")
@click.option("--gemm-n", default=1024, show_default=True, help="Size of the peak-GEMM reference.")
@click.pass_obj
def bench(obj, out_dir, input_size, hidden, layers, cases, threads, forms, providers, runtimes, min_time, gemm_n):
    """Benchmark runner x form x provider x threads; write a table, JSON and a PNG chart."""
    from lstm_onnx.bench.cases import DEFAULT_CASES, parse_case
    from lstm_onnx.bench.report import to_table, write_all
    from lstm_onnx.bench.run import BenchConfig, run_bench

    try:
        config = BenchConfig(input_size=input_size, hidden=hidden, layers=layers,
                             cases=tuple(parse_case(c) for c in cases) or DEFAULT_CASES,
                             threads=tuple(int(t) for t in threads.split(",")), forms=tuple(forms) or None,
                             providers=tuple(p.lower() for p in providers) or ("cpu",),
                             runtimes=tuple(runtimes) or ("onnxruntime", "openvino", "torch"),
                             min_time=min_time, gemm_n=gemm_n)
    except ValueError as exc:
        _fail(str(exc).replace("invalid literal for int() with base 10", "--threads: not a number"))
    if min(config.threads) < 1:
        _fail("--threads: each thread count must be >= 1")
    from lstm_onnx.exporters.export import FORMS

    unknown = [f for f in config.forms or () if f not in FORMS]
    if unknown:
        _fail(f"unknown form(s) {unknown}; choose from {', '.join(FORMS)}")
    result = run_bench(config, log=lambda m: obj.echo(m, err=True))
    paths = write_all(result, out_dir)
    click.echo(to_table(result))
    obj.echo(f"wrote {paths['table']}, {paths['json']}, {paths['chart']}")


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
    from lstm_onnx.runtimes.base import RunnerError
    from lstm_onnx.runtimes.embed import Predictor, PredictorError

    _load_onnx(model)
    x = _read_array(Path(inputs))
    try:
        pred = Predictor.load(model, provider=provider)
        y = pred.predict(x if x.ndim == 3 else x[None], normalize=raw)
    except (PredictorError, RunnerError) as exc:
        _fail(str(exc))
    if out is None:
        click.echo(_csv_text(y))
        return
    from lstm_onnx.core.fileio import atomic_path

    with atomic_path(out) as tmp:
        if out.endswith(".npy"):
            with open(tmp, "wb") as fh:
                np.save(fh, y)
        else:
            tmp.write_text(_csv_text(y) + "\n")
    obj.echo(f"wrote {out} {list(y.shape)}")


def _csv_text(y: np.ndarray) -> str:
    return "\n".join(",".join(f"{v:.7g}" for v in row) for row in y.reshape(-1, y.shape[-1]))


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def inspect(model, as_json):
    """Show MODEL's I/O, nodes, LSTM attributes (P present?) and our metadata."""
    from lstm_onnx.runtimes.inspect import describe, format_description

    info = describe(_load_onnx(model))
    click.echo(json.dumps(info, indent=2) if as_json else format_description(info))


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (no auth: keep loopback).")
@click.option("--port", default=8000, show_default=True)
@click.option("--provider", default="cpu", show_default=True)
@click.option("--workers", default=1, show_default=True, help="Inference threads running batches in parallel.")
@click.option("--threads", default=1, show_default=True, help="onnxruntime intra-op threads per run.")
@click.option("--max-batch", default=64, show_default=True, help="Sequences per run; 1 turns batching off.")
@click.option("--max-wait-ms", default=2.0, show_default=True, help="How long a partial batch waits.")
@click.option("--max-queue", default=1024, show_default=True, help="Queued sequences before 503.")
@click.option("--max-seq-len", default=1024, show_default=True)
@click.option("--session-ttl", default=300.0, show_default=True, help="Idle seconds before a session expires.")
@click.option("--max-sessions", default=1000, show_default=True)
def serve(model, host, port, provider, workers, threads, max_batch, max_wait_ms, max_queue, max_seq_len,
          session_ttl, max_sessions):
    """Serve MODEL over HTTP: /v1/predict (dynamic batching), /v1/sessions (streaming), /metrics."""
    from lstm_onnx.runtimes.base import RunnerError
    from lstm_onnx.runtimes.embed import PredictorError

    _load_onnx(model)
    try:
        from lstm_onnx.serving.server import serve as run_server
        from lstm_onnx.serving.settings import ServeSettings

        settings = ServeSettings(model=model, host=host, port=port, provider=provider, workers=workers,
                                 threads=threads, max_batch=max_batch, max_wait_ms=max_wait_ms,
                                 max_queue=max_queue, max_seq_len=max_seq_len, session_ttl_s=session_ttl,
                                 max_sessions=max_sessions)
        run_server(settings)
    except ImportError as exc:
        _fail(f"serving needs the serve extra ({exc.name} missing): pip install 'lstm-onnx-pipeline[serve]'")
    except (ValueError, PredictorError, RunnerError) as exc:
        _fail(str(exc))


def main() -> None:
    cli(prog_name="lstm-pipeline")
