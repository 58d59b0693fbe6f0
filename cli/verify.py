"""`lstm-pipeline verify [CHECKPOINT] MODEL`: every runner against a baseline (runtimes/verify.py)."""
from __future__ import annotations

import sys

import click

from lstm_onnx.cli.extras import require
from lstm_onnx.cli.main import RegistryName, _fail, _load_ckpt, _load_onnx
from lstm_onnx.runtimes import registry


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


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="[CHECKPOINT] MODEL")
@click.option("--checkpoint", "checkpoint_opt", type=click.Path(dir_okay=False),
              help="A checkpoint: its PyTorch model becomes the default baseline.")
@click.option("--runner", "runners", multiple=True, type=RegistryName([*registry.RUNNERS, "all"], "runner"),
              help="Runners to check (repeatable). Named runners' failures always count. Default, or `all`: "
                   "the default set, where a runner the capability table says is wrong (or untested) for this "
                   "model does not fail the run.")
@click.option("--baseline", type=RegistryName(registry.RUNNERS, "runner"),
              help="Runner to compare against (default: torch with a checkpoint, else onnxruntime-cpu, or "
                   "onnx-reference where ORT refuses the model).")
@click.option("--inputs", "inputs_npz", type=click.Path(dir_okay=False), help="Feeds from an .npz.")
@click.option("--expected", "expected_npz", type=click.Path(dir_okay=False),
              help="Compare against these saved outputs (.npz) instead of a baseline runner.")
@click.option("--save-inputs", type=click.Path(dir_okay=False), help="Write the feeds to an .npz.")
@click.option("--save-outputs", type=click.Path(dir_okay=False), help="Write the baseline's outputs to an .npz.")
@click.option("--batch", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--seq", default=23, show_default=True, type=click.IntRange(min=1))
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
    Exit code 0: passed; 1: a runner that counts failed (each reason is listed); 3: nothing was compared
    (every runner was skipped or could not run).
    """
    from lstm_onnx.runtimes.verify import VerifyOptions, explicit_tolerances, verify_model

    if len(paths) > 2:
        _fail("verify takes [CHECKPOINT] MODEL")
    checkpoint, model = (paths if len(paths) == 2 else (None, paths[0]))
    if checkpoint and checkpoint_opt:
        _fail("give the checkpoint once: as an argument or with --checkpoint")
    for flag, value in (("--atol", atol), ("--rtol", rtol)):
        if value is not None and not value >= 0:
            _fail(f"{flag} {value}: a tolerance must be >= 0")
    checkpoint = checkpoint or checkpoint_opt
    if checkpoint:
        require("verify CHECKPOINT MODEL", "torch")
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
    if report.exit_code:
        sys.exit(report.exit_code)
