"""`lstm-pipeline verify [CHECKPOINT] MODEL`: every runner against a baseline (runtimes/verify.py)."""
from __future__ import annotations

import sys

import click

from lstm_onnx.cli.extras import require
from lstm_onnx.cli.loading import RegistryName, load_ckpt, load_onnx
from lstm_onnx.cli.loading import fail as _fail
from lstm_onnx.runtimes import registry
from lstm_onnx.runtimes.compare import ELEMWISE, ERROR_STATS

CHECKPOINT_LOADER = "lstm_onnx.pipeline.checkpoint:load_checkpoint"  # how --isolate's child processes load it


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


def _test_data_model(folder, model, **others) -> str:
    """The MODEL for --test-data: as given, else the folder's model.onnx. The data sets replace the feeds
    and the baseline, so the options for those are refused."""
    from lstm_onnx.runtimes.onnx_test_data import locate

    given = [f"--{k.replace('_', '-')}" for k, v in others.items() if v]
    if given:
        _fail(f"--test-data gives the feeds and the expected outputs: drop {', '.join(given)}")
    try:
        path, _ = locate(folder, model)
    except ValueError as exc:
        _fail(str(exc))
    return str(path)


def _module_reference(spec, state_dict, checkpoint, baseline, expected, test_data):
    """The user's module as verify's baseline runner (--module), or None."""
    if not spec:
        if state_dict:
            _fail("--state-dict goes with --module")
        return None
    clash = [flag for flag, value in (("a CHECKPOINT", checkpoint), ("--baseline", baseline),
                                      ("--expected", expected), ("--test-data", test_data)) if value]
    if clash:
        _fail(f"--module is the baseline: drop {', '.join(clash)}")
    require("verify --module", "torch")
    from lstm_onnx.exporters.errors import ExportError
    from lstm_onnx.exporters.module import load_module
    from lstm_onnx.runtimes.torch_ref import ModuleRunner

    try:
        return ModuleRunner(load_module(spec, state_dict))
    except ExportError as exc:
        _fail(str(exc))


@click.command()
@click.argument("paths", nargs=-1, metavar="[CHECKPOINT] MODEL")
@click.option("--runner", "runners", multiple=True, type=RegistryName([*registry.RUNNERS, "all"], "runner"),
              help="Runners to check (repeatable). Named runners' failures always count. Default, or `all`: "
                   "the default set, where a runner the capability table says is wrong (or untested) for this "
                   "model does not fail the run.")
@click.option("--baseline", type=RegistryName(registry.RUNNERS, "runner"),
              help="Runner to compare against (default: torch with a checkpoint, else onnxruntime-cpu, or "
                   "onnx-reference where ORT refuses the model).")
@click.option("--inputs", "inputs_npz", type=click.Path(dir_okay=False),
              help="Feeds from an .npz, or X.json from `polygraphy run --save-inputs` (its first iteration).")
@click.option("--expected", "expected_npz", type=click.Path(dir_okay=False),
              help="Compare against these saved outputs instead of a baseline runner: an .npz, or X.json from "
                   "`polygraphy run --save-outputs` (one runner, first iteration).")
@click.option("--save-inputs", type=click.Path(dir_okay=False),
              help="Write the feeds to an .npz, or for X.json as `polygraphy run --load-inputs` reads them.")
@click.option("--save-outputs", type=click.Path(dir_okay=False),
              help="Write the baseline's outputs to an .npz, or for X.json as Polygraphy RunResults "
                   "(`polygraphy run MODEL --onnxrt --load-outputs X.json` compares with them).")
@click.option("--test-data", type=click.Path(), metavar="DIR",
              help="ONNX test data: a model folder (model.onnx, test_data_set_N/input_K.pb, output_K.pb; then "
                   "MODEL may be left out) or one test_data_set_N with MODEL. Each data set's inputs are the "
                   "feeds and its outputs the baseline; every set is verified.")
@click.option("--save-test-data", type=click.Path(), metavar="DIR",
              help="Write model.onnx, the feeds and the baseline's outputs to DIR as ONNX test data.")
@click.option("--batch", default=4, show_default=True, type=click.IntRange(min=1),
              help="Sequences in the random feeds (a fixed-batch export's own size wins).")
@click.option("--seq", default=23, show_default=True, type=click.IntRange(min=1),
              help="Steps per sequence in the random feeds (a fixed-length export's own length wins).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of the random feeds.")
@click.option("--atol", type=float, help="Absolute tolerance for every output (default by dtype).")
@click.option("--rtol", type=float, help="Relative tolerance for every output.")
@click.option("--check-error-stat", "error_stat", default=ELEMWISE, show_default=True,
              type=click.Choice(list(ERROR_STATS)),
              help="What passes, as Polygraphy's option: elemwise, every element |diff| <= atol + rtol*|baseline|; "
                   "max, mean, median or p99 (99th percentile), that statistic of |diff| <= atol OR of "
                   "|diff|/|baseline| <= rtol (mean, median and p99 let a few outlying elements through).")
@click.option("--fail-fast", is_flag=True,
              help="Stop at the first failure that counts; the runners not yet run are listed as skipped.")
@click.option("--isolate", is_flag=True,
              help="Run each runner (and the baseline) in its own process: one that crashes, hangs or leaks is "
                   "reported as that runner's error and the others still run.")
@click.option("--runner-timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="With --isolate: kill a runner's process after this long (default 300).")
@click.option("--allow-tf32", is_flag=True, help="Let ORT CUDA use TF32 (compared at the looser tf32 tolerance).")
@click.option("--provider-option", "provider_options", multiple=True, metavar="PROVIDER:KEY=VALUE",
              help="Passed to the ORT provider, e.g. cuda:cudnn_conv_algo_search=DEFAULT (repeatable).")
@click.option("--strict-placement", is_flag=True, help="Fail if any node ran on a provider other than requested.")
@click.option("--module", "module_spec", metavar="PKG.MOD:FACTORY",
              help="The baseline is your own nn.Module (FACTORY() builds it), as exported with export --module.")
@click.option("--state-dict", type=click.Path(dir_okay=False), help="--module: the weights to load into it.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--markdown", is_flag=True, help="Print the report as Markdown.")
@click.pass_obj
def verify(obj, paths, runners, baseline, inputs_npz, expected_npz, save_inputs, save_outputs,
           test_data, save_test_data, batch, seq, seed, atol, rtol, allow_tf32, provider_options, strict_placement,
           as_json, markdown,
           error_stat, fail_fast, isolate, runner_timeout, module_spec, state_dict):
    """Run MODEL on every available runner and compare each with a baseline.

    Works on any ONNX model with LSTM nodes; with a CHECKPOINT its PyTorch model is the baseline; with
    --test-data (ONNX's backend test format) each data set's outputs are.
    Exit code 0: passed; 1: a runner that counts failed (each reason is listed); 3: nothing was compared
    (every runner was skipped or could not run).
    """
    from lstm_onnx.runtimes.verify import VerifyOptions, explicit_tolerances, verify_model
    from lstm_onnx.runtimes.verify_data_sets import verify_test_data

    if len(paths) > 2 or not (paths or test_data):
        _fail("verify takes [CHECKPOINT] MODEL" + ("" if paths else " (or --test-data DIR with model.onnx)"))
    checkpoint, model = (paths if len(paths) == 2 else (None, paths[0] if paths else None))
    if test_data:
        model = _test_data_model(test_data, model, baseline=baseline, inputs=inputs_npz, expected=expected_npz,
                                 save_inputs=save_inputs, save_outputs=save_outputs, save_test_data=save_test_data)
    for flag, value in (("--atol", atol), ("--rtol", rtol)):
        if value is not None and not value >= 0:
            _fail(f"{flag} {value}: a tolerance must be >= 0")
    if runner_timeout is not None and not isolate:
        _fail("--runner-timeout needs --isolate: only a runner in its own process can be stopped")
    if checkpoint:
        require("verify CHECKPOINT MODEL", "torch")
    ckpt = load_ckpt(checkpoint) if checkpoint else None
    load_onnx(model)
    reference = _module_reference(module_spec, state_dict, checkpoint, baseline, expected_npz, test_data)
    options = VerifyOptions(runners=tuple(runners) or None, baseline=baseline, batch=batch, seq=seq, seed=seed,
                            inputs=inputs_npz, expected=expected_npz, tolerances=explicit_tolerances(atol, rtol),
                            allow_tf32=allow_tf32, provider_options=_provider_options(provider_options),
                            strict_placement=strict_placement, save_inputs=save_inputs, save_outputs=save_outputs,
                            save_test_data=save_test_data, error_stat=error_stat,
                            fail_fast=fail_fast, isolate=isolate, runner_timeout=runner_timeout,
                            checkpoint=checkpoint, checkpoint_loader=CHECKPOINT_LOADER if checkpoint else None,
                            reference=reference)
    try:
        report = verify_test_data(model, ckpt, options, test_data) if test_data else verify_model(model, ckpt, options)
    except ValueError as exc:
        _fail(str(exc))
    click.echo(report.to_json() if as_json else report.to_markdown() if markdown else report.to_table())
    if report.exit_code:
        sys.exit(report.exit_code)
