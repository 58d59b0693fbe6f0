"""The `lstm-pipeline` command: one click group; each command parses, calls one library function, prints."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import numpy as np

from lstm_onnx.cli.extras import require
from lstm_onnx.cli.inputs import read_array
from lstm_onnx.cli.loading import RegistryName
from lstm_onnx.cli.loading import fail as _fail
from lstm_onnx.cli.loading import load_ckpt as _load_ckpt
from lstm_onnx.cli.loading import load_onnx as _load_onnx
from lstm_onnx.exporters import forms as export_forms
from lstm_onnx.pipeline.config import DEVICES
from lstm_onnx.runtimes import registry
from lstm_onnx.runtimes.providers import PROVIDERS


class Context:
    def __init__(self, quiet: bool):
        self.quiet = quiet

    def echo(self, msg: str = "", err: bool = False) -> None:
        if not self.quiet or err:
            click.echo(msg, err=err)


class UsageLine(click.ClickException):
    """click's usage error in one line (click prints the usage and a hint above it)."""

    exit_code = 2


class Group(click.Group):
    """Every user error in one line on stderr: click's usage errors too, and an artifact that cannot be
    written (core.fileio.ArtifactWriteError: `cannot write PATH: REASON`)."""

    def invoke(self, ctx):
        from lstm_onnx.core.fileio import ArtifactWriteError

        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            raise UsageLine(f"{exc.format_message()} (see `{where} -h`)") from None
        except ArtifactWriteError as exc:
            raise click.ClickException(str(exc)) from None


def _check_writable(path, folder: bool = False) -> None:
    """Fail now, not after the work, if `path` (a file, or with `folder` a folder) cannot be written: the
    nearest folder that exists must take a new file."""
    import tempfile

    path = Path(path)
    probe = path if folder else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        _fail(f"cannot write {path}: {probe} is a file, not a folder")
    try:
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror or exc}")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--threads", type=int, help="Override train.threads (torch CPU threads; 0: picked by measuring).")
@click.option("--resume", is_flag=True, help="Continue from OUT.state (config from there unless --config).")
@click.option("--nproc", type=click.IntRange(min=1),
              help="Train data-parallel in N processes on this machine (torchrun; docs/training.md).")
@click.option("--device", type=click.Choice(list(DEVICES)),
              help="Override train.device (default cpu; auto: cuda when torch sees a GPU; docs/training.md).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False),
              help="Train on this CSV with no config: sizes come from the data; the resolved config is written "
                   "next to OUT (OUT with .toml), for `train --config` to repeat the run (docs/tasks.md).")
@click.option("--target", "targets", multiple=True, metavar="COL", help="--csv: a column to predict (repeatable).")
@click.option("--time-column", metavar="COL",
              help="--csv: the timestamp column (default: the one column of ISO dates, if any); never an input.")
@click.option("--series-column", metavar="COL",
              help="--csv: the series id of each row (long format); windows and splits never cross a series.")
@click.option("--window", type=click.IntRange(min=1), help="--csv: input steps per window (default 50).")
@click.option("--horizon", type=click.IntRange(min=1), help="--csv: predict this many steps after the window "
                                                             "(default 1).")
@click.option("--normalize", type=click.Choice(["global", "series"]),
              help="--csv: one set of statistics (global, the default) or each series its own.")
@click.option("--drop", "drop_columns", multiple=True, metavar="COL",
              help="--csv: a column that is not an input (repeatable), e.g. a text column.")
@click.pass_obj
def train(obj, config_path, out, epochs, seed, no_peephole, threads, resume, nproc, device, csv_path, targets,
          time_column, series_column, window, horizon, normalize, drop_columns):
    """Train a model on the built-in task (or --config, or --csv) and write a checkpoint."""
    require("train", "torch", "tqdm", *(["tomli_w"] if csv_path else []))
    from lstm_onnx.pipeline import device as devices
    from lstm_onnx.pipeline import distributed
    from lstm_onnx.pipeline.config import RunConfig, load_run_config
    from lstm_onnx.pipeline.csv_run import config_path as toml_path
    from lstm_onnx.pipeline.csv_run import csv_config, write_config
    from lstm_onnx.pipeline.data import CSVError
    from lstm_onnx.pipeline.metrics import summary
    from lstm_onnx.pipeline.train import load_state_config, state_path
    from lstm_onnx.pipeline.train import train as run_train

    csv_options = {"--target": targets, "--time-column": time_column, "--series-column": series_column,
                   "--window": window, "--horizon": horizon, "--normalize": normalize, "--drop": drop_columns}
    given = [flag for flag, value in csv_options.items() if value]
    if csv_path and (config_path or resume):
        _fail(f"--csv builds the config from the data: leave out {'--config' if config_path else '--resume'} "
              f"(`train --csv` writes the config it used next to the checkpoint; --config repeats the run)")
    if csv_path:
        try:
            toml = toml_path(out)
        except CSVError as exc:
            _fail(str(exc))
    if given and not csv_path:
        _fail(f"{given[0]} goes with --csv (with --config, set it in the config's [data])")
    try:
        if csv_path:
            config = csv_config(csv_path, list(targets), time_column=time_column or "",
                                series_column=series_column or "", drop_columns=list(drop_columns),
                                window=window, horizon=horizon, normalize=normalize)
        elif config_path:
            config = load_run_config(config_path)
        else:
            config = load_state_config(state_path(out)) if resume else RunConfig()
    except FileNotFoundError:
        _fail(f"config not found: {config_path}")
    except (ValueError, TypeError) as exc:
        _fail(f"bad config {config_path}: {exc}" if config_path else str(exc))
    overrides = [("--epochs", config.train, "epochs", epochs), ("--seed", config.train, "seed", seed),
                 ("--seed", config.data, "seed", seed), ("--threads", config.train, "threads", threads),
                 ("--device", config.train, "device", device)]
    for flag, section, name, value in overrides:
        if value is not None:
            setattr(section, name, value)
            try:
                config.validate()  # the checks a config file's value gets, in one place
            except ValueError as exc:
                _fail(f"{flag} {value}: {exc}")
    if no_peephole:
        config.model.peephole = False
    _check_writable(out)
    try:
        world = distributed.env_world()
    except ValueError as exc:
        _fail(str(exc))
    if nproc and world:
        _fail("--nproc starts torchrun itself; under torchrun, leave --nproc out")
    try:
        device_kind = devices.kind(config.train.device)
        where = devices.resolve(config.train.device, world) if world else None
    except ValueError as exc:
        _fail(str(exc))
    if nproc and nproc > 1:
        try:
            distributed.per_rank_batch(config.train.batch_size, distributed.World(size=nproc))
            devices.check_ranks(nproc, device_kind)
        except ValueError as exc:
            _fail(str(exc) if str(exc).startswith("--nproc") else f"--nproc {nproc}: {exc}")
        return _launch_ranks(obj, nproc, out)
    if world:
        devices.use(where)  # before nccl's init: each rank on its own GPU
        distributed.init(world, where)
        obj.quiet = obj.quiet or world.rank != 0  # rank 0 speaks for the job
    try:
        dataset = _check_data(obj, config)
        ckpt = run_train(config, out, progress=not obj.quiet, log=obj.echo, dataset=dataset,
                         resume=state_path(out) if resume else None)
    except ValueError as exc:
        _fail(str(exc))
    except RuntimeError as exc:
        if not (world and distributed.peer_lost(exc)):
            raise
        if distributed.under_launcher():  # `--nproc` names the rank that failed first, in one line
            click.get_current_context().exit(1)
        _fail(f"rank {world.rank}: another process of this job stopped ({str(exc).splitlines()[0][:160]}); "
              f"{_state_note(out)}")
    finally:
        distributed.shutdown()
    if ckpt is None:  # not rank 0
        return
    wrote = f"wrote {out}"
    if csv_path:
        wrote += f" and {write_config(config, toml)} (train --config repeats the run)"
    m = ckpt.metrics
    click.echo(f"best val loss {m['best_val_loss']:.5f} (epoch {m['best_epoch']}), test {summary(m['test'])}, "
               f"{m['train_seconds']:.1f}s; {wrote}")  # the result line, -q or not


def _launch_ranks(obj, nproc: int, out) -> None:
    """`train --nproc N`: this command again, without --nproc, in N ranks under torchrun."""
    from lstm_onnx.pipeline import distributed

    ctx = click.get_current_context()
    args = ["-q"] if obj.quiet else []
    args.append(ctx.info_name)
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name == "nproc" or value is None or value is False or value == ():
            continue
        if getattr(param, "is_flag", False):
            args.append(param.opts[-1])
        else:
            for item in value if isinstance(value, tuple) else (value,):
                args += [param.opts[-1], str(item)]
    result = distributed.launch(distributed.torchrun_command(nproc, args))
    if result.returncode == 0:
        return
    if result.interrupted:
        _fail(f"interrupted; {_state_note(out)}")
    if result.rank_reported and (result.exitcode or 0) > 0:  # the rank's own one-line error is above
        ctx.exit(result.returncode)
    who = f"rank {result.failed_rank}" if result.failed_rank is not None else "a rank"
    _fail(f"{who} {distributed.describe_exit(result.exitcode)}; torchrun stopped the others; {_state_note(out)}")


def _state_note(out) -> str:
    """Where the job stands on disk: the training state of its last finished epoch, and how to go on."""
    from lstm_onnx.pipeline.train import state_path

    state = state_path(out)
    if not state.is_file():
        return f"no epoch finished, so nothing was saved at {state}"
    try:
        import torch

        epoch = f" (epoch {torch.load(state, map_location='cpu', weights_only=True)['epoch']})"
    except Exception:  # noqa: BLE001 - the note must not fail; the path is what matters
        epoch = ""
    return f"the last saved state is {state}{epoch}; continue with `lstm-pipeline train --resume -o {out}`"


def _check_data(obj, config):
    """check-data's findings before training a CSV (pipeline/csv_run.py): warnings printed, errors refused in
    one line. Returns the dataset it loaded (None for generated tasks), so that training does not read the CSV
    again."""
    from lstm_onnx.pipeline.csv_run import checked_dataset
    from lstm_onnx.pipeline.data import CSVError

    try:
        return checked_dataset(config, warn=lambda line: obj.echo(line, err=True))
    except CSVError as exc:
        _fail(str(exc))


@cli.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--out", default="artifacts/report", show_default=True, type=click.Path(file_okay=False),
              help="Folder for report.md, metrics.json and the PNG plots.")
@click.pass_obj
def report(obj, checkpoint, out):
    """Evaluate CHECKPOINT on its test split; write metrics and plots (loss curves, forecast vs actual)."""
    require("report", "torch")
    from lstm_onnx.pipeline.report import write_report

    ckpt = _load_ckpt(checkpoint)
    _check_writable(out, folder=True)
    try:
        files = write_report(ckpt, out)
    except ValueError as exc:
        _fail(str(exc))
    for f in files:
        obj.echo(f"wrote {f}")


class ShapeType(click.ParamType):
    """B,S,F: three positive sizes."""

    name = "B,S,F"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            sizes = tuple(int(v) for v in str(value).split(","))
        except ValueError:
            sizes = ()
        if len(sizes) != 3 or min(sizes) < 1:
            self.fail(f"{value!r}: expected three sizes >= 1, as B,S,F (e.g. 2,16,3)", param, ctx)
        return sizes


def _export_module(obj, checkpoint, out, spec, state_dict, input_shape, opset, checkpoint_only) -> None:
    import time

    from lstm_onnx.exporters.errors import ExportError
    from lstm_onnx.exporters.export import export_summary
    from lstm_onnx.exporters.module import export_module
    from lstm_onnx.exporters.opsets import OpsetError
    from lstm_onnx.exporters.validate import ValidationError

    if checkpoint is not None:
        _fail("give a CHECKPOINT or --module, not both")
    if not (spec and input_shape):
        _fail("--module PKG.MOD:FACTORY and --input-shape B,S,F go together (--state-dict is optional)")
    if checkpoint_only:
        _fail(f"--module exports the module as it is: drop {', '.join('--' + n.replace('_', '-') for n in checkpoint_only)}")
    if state_dict and not Path(state_dict).is_file():
        _fail(f"--state-dict {state_dict}: not found")
    _check_writable(out)
    start = time.perf_counter()
    try:
        model = export_module(spec, out, input_shape, state_dict, opset)
    except (ExportError, OpsetError, ValidationError) as exc:
        _fail(str(exc))
    obj.echo(f"wrote {out}: {export_summary(model)}, validated against {spec} in {time.perf_counter() - start:.2f}s")


@cli.command()
@click.argument("checkpoint", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--out", default="artifacts/model.onnx", show_default=True, type=click.Path(dir_okay=False),
              help="Where to write the ONNX model (its metadata holds the config and normalization).")
@click.option("--form", default="native", show_default=True, type=click.Choice(export_forms.choices()),
              help=export_forms.help_text())
@click.option("--target", help="The runtime it is for (see README 'Export forms and runtimes'), e.g. onnxruntime-cuda, "
                               "openvino-cpu: --form auto picks the form; another form is refused if the target "
                               "computes it wrong.")
@click.option("--allow-known-wrong", is_flag=True,
              help="Write a form that --target computes wrong or refuses, with a warning.")
@click.option("--seq-len", type=click.IntRange(1, 4096),
              help=f"{export_forms.having('static_shapes')}: the static sequence length.")
@click.option("--batch-size", type=click.IntRange(1, 1024),
              help=f"{export_forms.having('static_shapes')}: the static batch size (default 1).")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(export_forms.DTYPES),
              help="Precision of the computation (I/O stay float32); not every form has every dtype.")
@click.option("--quantize", type=click.Choice(["int8", "int8-static"]),
              help="int8: dynamic (onnxruntime quantize_dynamic); int8-static: QDQ, calibrated on the checkpoint's "
                   "training windows (docs/forms.md).")
@click.option("--stateful", is_flag=True, help="Add h0/c0 inputs and hn/cn outputs (streaming).")
@click.option("--lengths", is_flag=True, help="Add an int32 `lengths` input (ONNX sequence_lens).")
@click.option("--probe", is_flag=True, help=f"--form {export_forms.having('scan')}: also output every gate's trace "
                                          "(probe.l*.d*.*, for `lstm-pipeline gates`; docs/gates.md).")
@click.option("--opset", type=int, help="Default-domain opset (default: the newest safe one).")
@click.option("--via", default="graph", show_default=True, type=click.Choice(["graph", "torch.onnx"]),
              help="graph: built from the weights (fast). torch.onnx: traced by torch.onnx.export(dynamo=True); "
                   f"{export_forms.having('via_torch_onnx')} form only. Both are validated the same way.")
@click.option("--module", "module_spec", metavar="PKG.MOD:FACTORY",
              help="Export your own nn.Module instead of a CHECKPOINT: FACTORY() builds it; each PeepholeLSTM or "
                   "nn.LSTM inside becomes a native LSTM node (docs/export-module.md).")
@click.option("--state-dict", type=click.Path(dir_okay=False),
              help="--module: the weights to load into it (a torch.save'd state_dict).")
@click.option("--input-shape", type=ShapeType(), metavar="B,S,F",
              help="--module: an example input's [batch, seq, features]; batch and seq stay dynamic.")
@click.pass_obj
def export(obj, checkpoint, out, form, target, allow_known_wrong, seq_len, batch_size, dtype, quantize, stateful,
           lengths, probe, opset, via, module_spec, state_dict, input_shape):
    """Export CHECKPOINT (or --module) to ONNX, validate it against PyTorch, then write it."""
    require("export", "torch")
    import time

    from lstm_onnx.exporters.export import ExportError, ExportOptions, export_checkpoint, export_summary, file_sha256
    from lstm_onnx.exporters.opsets import OpsetError
    from lstm_onnx.exporters.validate import ValidationError

    if module_spec or state_dict or input_shape:
        ctx = click.get_current_context()
        given = [n for n in ("form", "target", "seq_len", "batch_size", "dtype", "quantize", "stateful", "lengths",
                             "probe", "via", "allow_known_wrong")
                 if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]
        _export_module(obj, checkpoint, out, module_spec, state_dict, input_shape, opset, given)
        return
    if checkpoint is None:
        _fail("export needs a CHECKPOINT (or --module PKG.MOD:FACTORY --input-shape B,S,F)")
    ckpt = _load_ckpt(checkpoint)
    start = time.perf_counter()
    options = ExportOptions(form, stateful, lengths, opset, target=target, seq_len=seq_len,
                            batch_size=batch_size, dtype=dtype, quantize=quantize, via=via,
                            allow_known_wrong=allow_known_wrong, probe=probe)
    try:
        model = export_checkpoint(ckpt, out, options, checkpoint_sha256=file_sha256(checkpoint),
                                  warn=lambda line: click.secho(f"warning: {line}", err=True, fg="yellow", bold=True))
    except (ExportError, OpsetError, ValidationError) as exc:
        _fail(str(exc))
    obj.echo(f"wrote {out}: {export_summary(model)}, validated in {time.perf_counter() - start:.2f}s")


@cli.command()
@click.option("-o", "--out", "out_dir", default="artifacts/bench", show_default=True,
              type=click.Path(file_okay=False), help="Where bench.json, bench.md and bench.png go.")
@click.option("--input-size", default=64, show_default=True, type=click.IntRange(min=1),
              help="Features per step of the benchmarked model (random weights).")
@click.option("--hidden", default=256, show_default=True, type=click.IntRange(min=1),
              help="Hidden units per LSTM layer.")
@click.option("--layers", default=1, show_default=True, type=click.IntRange(min=1), help="Stacked LSTM layers.")
@click.option("--case", "cases", multiple=True, metavar="NAME=BxS",
              help="Cases (repeatable; default: streaming=1x1 sequence=1x100 batch=64x100).")
@click.option("--threads", default="1,2", show_default=True, help="Comma-separated thread counts.")
@click.option("--form", "forms", multiple=True, type=click.Choice(list(export_forms.FORMS)),
              help="Export forms (repeatable; default: all).")
@click.option("--provider", "providers", multiple=True, type=click.Choice(registry.bench_providers(),
                                                                           case_sensitive=False),
              help="Devices for the runtime families (repeatable; default: cpu).")
@click.option("--runtime", "runtimes", multiple=True,
              type=RegistryName(dict.fromkeys(registry.bench_families() + registry.bench_names()), "bench runtime"),
              help="A family (its runners on each --provider) or one runner (repeatable; default: every "
                   "family's default runners).")
@click.option("--min-time", default=0.3, show_default=True, type=click.FloatRange(min=0),
              help="Seconds of timed runs per cell.")
@click.option("--gemm-n", default=1024, show_default=True, type=click.IntRange(min=1),
              help="The large square GEMM timed beside each case's own GEMM shapes; the fastest is the peak.")
@click.pass_obj
def bench(obj, out_dir, input_size, hidden, layers, cases, threads, forms, providers, runtimes, min_time, gemm_n):
    """Benchmark runner x form x provider x threads; write a table, JSON and a PNG chart."""
    require("bench", "torch")
    from lstm_onnx.bench.cases import DEFAULT_CASES, parse_case
    from lstm_onnx.bench.report import to_table, write_all
    from lstm_onnx.bench.run import BenchConfig, run_bench

    try:
        config = BenchConfig(input_size=input_size, hidden=hidden, layers=layers,
                             cases=tuple(_bench_case(parse_case, c) for c in cases) or DEFAULT_CASES,
                             threads=tuple(int(t) for t in threads.split(",")), forms=tuple(forms) or None,
                             providers=tuple(p.lower() for p in providers) or ("cpu",),
                             runtimes=tuple(runtimes) or None,
                             min_time=min_time, gemm_n=gemm_n)
    except ValueError as exc:
        _fail(str(exc).replace("invalid literal for int() with base 10", "--threads: not a number"))
    if min(config.threads) < 1:
        _fail("--threads: each thread count must be >= 1")
    _check_writable(out_dir, folder=True)
    result = run_bench(config, log=lambda m: obj.echo(m, err=True))
    paths = write_all(result, out_dir)
    click.echo(to_table(result))
    obj.echo(f"wrote {paths['table']}, {paths['json']}, {paths['chart']}")


MAX_BENCH_STEPS = 1 << 22  # batch x seq of one case


def _bench_case(parse_case, text: str):
    try:
        case = parse_case(text)
    except ValueError as exc:
        _fail(f"--case {exc}")
    if case.batch * case.seq > MAX_BENCH_STEPS:
        _fail(f"--case {text}: {case.batch * case.seq} steps (batch x seq); at most {MAX_BENCH_STEPS}")
    return case


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("inputs", type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(dir_okay=False), help=".npy or .csv (default: CSV to stdout).")
@click.option("--provider", default="cpu", show_default=True, type=click.Choice(list(PROVIDERS), case_sensitive=False),
              help="The onnxruntime execution provider to run on.")
@click.option("--allow-tf32", is_flag=True, help="Let ORT CUDA use TF32 (results shift by about 2.5e-4).")
@click.option("--raw/--normalized", default=True, show_default=True,
              help="Raw features in, raw targets out (normalization from the model's metadata).")
@click.option("--rolling", is_flag=True, help="A model trained on a table: a forecast from every window of the "
                                              "history, not only from each series' last.")
@click.option("--drop", metavar="COL,...", help="CSV: comma-separated columns to leave out.")
@click.option("--columns", metavar="COL,...",
              help="CSV: the names of the file's columns, for a file with no header row.")
@click.pass_obj
def predict(obj, model, inputs, out, provider, allow_tf32, raw, rolling, drop, columns):
    """Run MODEL on INPUTS: a CSV of one sequence (rows = steps), a table like the training data, or a .npy
    [batch, seq, features].

    \b
    CSV in: one row per step, one column per feature; an optional header row
    naming the model's features (`lstm-pipeline inspect` lists them); other
    columns are ignored.
    CSV out (stdout, or -o x.csv): a header row, then
      last/classify heads: sequence,<target names>       one row per sequence
      sequence heads:      sequence,step,<target names>  one row per step
    sequence and step count from 0: pandas.read_csv(...).groupby("sequence").
    \b
    A model trained on a table (train --csv) takes that table's layout, with a
    header: each series' history becomes windows the way training made them;
    out: <series column>,<time column>,<targets>, one forecast per series (the
    time it is for), or with --rolling one per window.
    """
    from lstm_onnx.cli.inputs import read_csv_table
    from lstm_onnx.runtimes.base import RunnerError
    from lstm_onnx.runtimes.embed import Predictor, PredictorError

    names = {flag: [t.strip() for t in text.split(",") if t.strip()] if text else None
             for flag, text in (("--drop", drop), ("--columns", columns))}
    _load_onnx(model)
    try:
        pred = Predictor.load(model, provider=provider, allow_tf32=allow_tf32, warn=False)
        for problem in pred.placement_problems:
            click.secho(f"warning: {problem}", err=True, fg="yellow", bold=True)
        table = None
        if "columns" in pred.meta and not inputs.endswith(".npy"):
            table = read_csv_table(Path(inputs), names["--columns"], names["--drop"])
        if table is not None:
            if not raw:
                _fail("--normalized: a table's forecasts are in raw units; leave it out")
            if out is not None and out.endswith(".npy"):
                _fail(f"-o {out}: a table's forecasts are written as CSV (-o x.csv)")
            text = _forecast_text(pred, table, inputs, rolling)
            y = None
        else:
            if rolling:
                _fail("--rolling needs a model trained on a table (train --csv) and a CSV with a header row")
            x = read_array(Path(inputs), pred.meta.get("feature_names"), names["--columns"], names["--drop"])
            y = _predict(pred, x, inputs, normalize=raw)
            text = None
    except (PredictorError, RunnerError) as exc:
        _fail(str(exc))
    if out is None:
        click.echo(text if y is None else _csv_text(y, pred), nl=False)
        return
    from lstm_onnx.core.fileio import atomic_path

    with atomic_path(out) as tmp:
        if y is None:
            tmp.write_text(text)
        elif out.endswith(".npy"):
            with open(tmp, "wb") as fh:
                np.save(fh, y)
        else:
            tmp.write_text(_csv_text(y, pred))
    obj.echo(f"wrote {out} " + (f"({text.count(chr(10)) - 1} forecasts)" if y is None else f"{list(y.shape)}"))


def _forecast_text(pred, table, inputs, rolling: bool) -> str:
    """The forecasts of a table (header, [(line, fields)]) as CSV; errors name the file and line."""
    from lstm_onnx.cli.predict_csv import table_text
    from lstm_onnx.runtimes.embed import PredictorError
    from lstm_onnx.runtimes.forecast import TableError, forecast

    header, rows = table
    columns = {name: [row[k] for _, row in rows] for k, name in enumerate(header)}
    try:
        return table_text(forecast(pred, columns, rolling, rows=[f"line {line}" for line, _ in rows]))
    except TableError as exc:
        raise PredictorError(f"{inputs}: {exc}") from None


def _predict(pred, x: np.ndarray, inputs, normalize: bool) -> np.ndarray:
    """The Predictor's refusal of the input names the input file."""
    from lstm_onnx.runtimes.embed import PredictorError

    try:
        return pred.predict(x if x.ndim == 3 else x[None], normalize=normalize)
    except PredictorError as exc:
        raise PredictorError(f"{inputs}: {exc}") from None


def _csv_text(y: np.ndarray, pred) -> str:
    from lstm_onnx.cli.predict_csv import prediction_text

    return prediction_text(y, pred.meta.get("target_names"))


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def inspect(model, as_json):
    """Show MODEL's I/O, nodes, LSTM attributes (P present?) and our metadata."""
    from lstm_onnx.runtimes.inspect import describe, format_description

    info = describe(_load_onnx(model))
    form = export_forms.FORMS.get(info["metadata"].get("form", ""))
    if as_json:
        click.echo(json.dumps(dict(info, form=dataclasses.asdict(form) if form else None), indent=2))
        return
    click.echo(format_description(info) + (f"\nform {form.describe()}" if form else ""))


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="OUT.ort: ONNX Runtime's format (+ OUT.required_operators.config); OUT.onnx: an optimized ONNX.")
@click.option("--optimize", "level", default="basic", show_default=True,
              type=click.Choice(["disabled", "basic", "extended", "all"]),
              help="ONNX Runtime's graph optimization level; a level that moves the outputs is refused.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written and checked as JSON.")
@click.pass_obj
def convert(obj, model, out, level, as_json):
    """Write MODEL in ONNX Runtime's format for mobile and minimal builds, or optimized offline."""
    from lstm_onnx.runtimes.ort_format import ConversionError
    from lstm_onnx.runtimes.ort_format import convert as convert_model

    _load_onnx(model)
    if Path(out).suffix.lower() not in (".ort", ".onnx"):
        raise click.ClickException(f"{out}: name the output .ort (ORT format) or .onnx (optimized ONNX)")
    _check_writable(out)
    try:
        done = convert_model(model, out, level)
    except ConversionError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(done.to_dict(), indent=2) if as_json else done.summary())


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the fingerprint and the checks as JSON.")
def doctor(as_json):
    """This machine: CPU, ISA, usable cores, versions; where an LSTM with P runs, int8, threads."""
    from lstm_onnx.core.machine import fingerprint
    from lstm_onnx.runtimes.doctor import checks, render

    fp = fingerprint()
    found = checks(fp)
    if as_json:
        click.echo(json.dumps({"machine": fp, "checks": {c.name: c.result for c in found}}, indent=2))
        return
    click.echo(render(fp, found))


# serve's options: (flag, ServeSettings field, help). The defaults are ServeSettings' own; CHOICES fixes the values
# an option takes, and NO_DEFAULT_SHOWN the options whose help says what their empty default means.
SERVE_OPTIONS = (
    ("--host", "host", "Interface to bind; beyond loopback, set a token (--auth-token-file)."),
    ("--port", "port", "TCP port to listen on (1..65535)."),
    ("--provider", "provider", "The onnxruntime execution provider to run on."),
    ("--allow-tf32", "allow_tf32", "Let ORT CUDA use TF32 (results shift by about 2.5e-4)."),
    ("--strict-placement", "strict_placement", "Refuse to start if a node (e.g. an LSTM with P under cuda) "
                                               "runs on another provider than requested."),
    ("--workers", "workers", "Inference threads running batches in parallel."),
    ("--threads", "threads", "onnxruntime intra-op threads per run."),
    ("--max-batch", "max_batch", "Sequences per run; 1 turns batching off."),
    ("--max-wait-ms", "max_wait_ms", "How long a partial batch waits."),
    ("--max-queue", "max_queue", "Queued sequences before 503."),
    ("--max-seq-len", "max_seq_len", "Steps per sequence (and per session step) a request may send; beyond it 422."),
    ("--session-ttl", "session_ttl_s", "Idle seconds before a session expires."),
    ("--max-sessions", "max_sessions", "Open streaming sessions at once; beyond it 503."),
    ("--max-sessions-per-client", "max_sessions_per_client", "Open sessions/sequences one client address may hold; "
                                                             "beyond it 429 (behind a proxy, all clients share one)."),
    ("--max-header-bytes", "max_header_bytes", "Request line + headers; beyond it 431."),
    ("--header-timeout", "header_timeout_s", "Seconds for a request's headers to arrive, else 408."),
    ("--body-timeout", "body_timeout_s", "Seconds for a body to arrive after its headers, else 408."),
    ("--max-connections", "max_connections", "Open connections; a request on one more gets 503 (probes excepted)."),
    ("--max-buffered-bytes", "max_buffered_bytes", "Bytes of request bodies held at once, all connections "
                                                   "together; a body beyond it gets 503."),
    ("--max-parse-queue", "max_parse_queue", "Big bodies (> 64 KiB) waiting for the parse process; beyond it 503."),
    ("--queue-timeout", "queue_timeout_s", "Seconds a sequence may wait in the batch queue; then 503, not run "
                                           "(0: no deadline)."),
    ("--graceful-timeout", "graceful_timeout_s", "Seconds in-flight requests get to finish on SIGTERM."),
    ("--grpc-port", "grpc_port", "Also serve the Open Inference Protocol over gRPC on this port (0: no gRPC; "
                                 "needs the triton extra)."),
    ("--model-name", "model_name", "The name /v2 (Open Inference Protocol) serves MODEL under (default: its file stem)."),
    ("--engine", "engine", "uvicorn: this process; ray: Ray Serve replicas (needs the ray extra)."),
    ("--replicas", "replicas", "--engine ray: model replicas (autoscaling minimum with --max-replicas)."),
    ("--max-replicas", "max_replicas", "--engine ray: autoscale up to this many (0: fixed --replicas)."),
    ("--target-ongoing", "target_ongoing", "--engine ray: ongoing requests per replica autoscaling aims for."),
)
NO_DEFAULT_SHOWN = ("model_name",)


def _serve_options(command):
    from dataclasses import fields

    from lstm_onnx.serving.settings import ENGINES, ServeSettings

    choices = {"provider": click.Choice(list(PROVIDERS), case_sensitive=False), "engine": click.Choice(ENGINES)}
    defaults = {f.name: f.default for f in fields(ServeSettings)}
    for flag, name, help_text in reversed(SERVE_OPTIONS):
        default = defaults[name]
        how = ({"is_flag": True} if isinstance(default, bool) else
               {"show_default": name not in NO_DEFAULT_SHOWN, "type": choices.get(name, type(default))})
        command = click.option(flag, name, default=default, help=help_text, **how)(command)
    return command


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@_serve_options
@click.option("--auth-token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding a bearer token every route but /healthz and /readyz then needs "
                   "(default: $LSTM_PIPELINE_TOKEN, else no token).")
def serve(model, auth_token_file, **settings):
    """Serve MODEL over HTTP: /v1/predict (dynamic batching), /v1/sessions (streaming), /metrics."""
    from lstm_onnx.runtimes.base import RunnerError
    from lstm_onnx.runtimes.embed import PredictorError
    from lstm_onnx.serving.auth import token_from
    from lstm_onnx.serving.settings import ServeSettings

    try:  # settings first: a bad --port or token file needs no model
        serve_settings = ServeSettings(model=model, auth_token=token_from(auth_token_file), **settings)
    except ValueError as exc:
        _fail(str(exc))
    _load_onnx(model)
    try:
        from lstm_onnx.serving.server import serve as run_server

        run_server(serve_settings)
    except ImportError as exc:
        _fail(f"serving needs the serve extra ({exc.name} missing): pip install 'lstm-onnx-pipeline[serve]'")
    except (ValueError, PredictorError, RunnerError) as exc:
        _fail(str(exc))


from lstm_onnx.cli.check_data import check_data  # noqa: E402

cli.add_command(check_data)

from lstm_onnx.cli.gates import gates  # noqa: E402

cli.add_command(gates)

from lstm_onnx.cli.deploy import deploy  # noqa: E402

cli.add_command(deploy)

from lstm_onnx.cli.verify import verify  # noqa: E402

cli.add_command(verify)

from lstm_onnx.cli.loadtest import loadtest  # noqa: E402

cli.add_command(loadtest)

from lstm_onnx.cli.capabilities import capabilities  # noqa: E402

cli.add_command(capabilities)


def main() -> None:
    cli(prog_name="lstm-pipeline")
