"""`lstm-pipeline gates MODEL INPUT`: gate saturation, the peephole's share, and heatmaps (docs/gates.md)."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)

from lstm_onnx.cli.inputs import read_array


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("inputs", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False),
              help="Write saturation.png and heatmaps.png here ([plots] extra).")
@click.option("--sequence", default=0, show_default=True, type=click.IntRange(min=0),
              help="The sequence of the batch that the heatmaps show.")
@click.option("--lstmvis", "lstmvis_dir", type=click.Path(file_okay=False),
              help="Write the traces as LSTMVis input (states.h5, words.dict, lstm.yml; [lstmvis] extra).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def gates(obj, model, inputs, out_dir, sequence, lstmvis_dir, as_json):
    """What the gates of MODEL do on INPUTS (raw features: a CSV of one sequence, or a .npy [batch, seq, F]).

    MODEL is a checkpoint (.pt: traces from the PyTorch weights) or an ONNX export made with
    `export --form decomposed --probe` (traces from ONNX Runtime). Reports, per layer and gate (i, f, o),
    the fraction of steps left-saturated (< 0.1) and right-saturated (> 0.9) after Karpathy et al. 2015,
    and the peephole's share: mean |p*c| / mean |pre-activation|.
    """
    path = Path(model)
    if not path.is_file():
        _fail(f"model not found: {path}")
    traces, source = (_checkpoint_traces(path, Path(inputs)) if path.suffix == ".pt"
                      else _onnx_traces(path, Path(inputs)))
    from lstm_onnx.runtimes.gate_stats import gate_report

    report = gate_report(traces, source)
    if sequence >= report.sequences:
        _fail(f"--sequence {sequence}: the input holds {report.sequences} sequence(s) (0..{report.sequences - 1})")
    written = []
    try:
        if out_dir:
            from lstm_onnx.runtimes.gate_plots import gate_heatmaps, saturation_scatter

            written += [saturation_scatter(report, Path(out_dir) / "saturation.png"),
                        gate_heatmaps(traces, sequence, Path(out_dir) / "heatmaps.png",
                                      f"gates over time, {source}, sequence {sequence}")]
        if lstmvis_dir:
            from lstm_onnx.runtimes.lstmvis import write_lstmvis

            written += write_lstmvis(traces, Path(lstmvis_dir))
    except ValueError as exc:  # a missing extra
        _fail(str(exc))
    click.echo(report.to_json() if as_json else report.to_table())
    for p in written:
        obj.echo(f"wrote {p}", err=as_json)


def _fail(msg: str) -> None:
    raise click.ClickException(msg)


def _raw_input(path: Path, feature_names, num_features: int) -> np.ndarray:
    x = read_array(path, feature_names)
    x = np.asarray(x)
    x = x[None] if x.ndim == 2 else x
    if x.ndim != 3 or x.shape[2] != num_features or 0 in x.shape[:2]:
        _fail(f"{path}: shape {list(x.shape)} does not fit: expected [batch, seq, {num_features}] raw features "
              f"(or a CSV of [seq, {num_features}])")
    if x.dtype.kind not in "biuf" or not np.isfinite(x).all():
        _fail(f"{path}: expected finite real numbers")
    if x.dtype.kind == "f" and np.abs(x).max() > FLOAT32_MAX:  # checked before the cast, which would make inf
        _fail(f"{path}: input has values beyond float32 (|x| <= 3.4e38)")
    return x.astype(np.float32)


def _checkpoint_traces(path: Path, inputs: Path):
    from lstm_onnx.cli.extras import require
    require("gates CHECKPOINT", "torch")
    from lstm_onnx.pipeline.checkpoint import CheckpointError, load_checkpoint
    from lstm_onnx.pipeline.probe import torch_traces

    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        _fail(str(exc))
    cfg = ckpt.model_config
    x = _raw_input(inputs, ckpt.feature_names, cfg.input_size)
    norm = ckpt.normalization
    with np.errstate(over="ignore"):  # refused by name just below
        xn = (x - norm.input_mean) / norm.input_std
    if not np.isfinite(xn).all():
        _fail(f"{inputs}: input values up to {np.abs(x).max():.3g} overflow float32 once normalized by this "
              "model's training statistics")
    return torch_traces(ckpt.state_dict, cfg, xn), f"torch ({path.name})"


def _onnx_traces(path: Path, inputs: Path):
    import onnx

    from lstm_onnx.core.probe import is_probe
    from lstm_onnx.runtimes.embed import Predictor, PredictorError
    from lstm_onnx.runtimes.gate_stats import onnx_traces

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and others
        _fail(f"{path} is not a readable checkpoint (.pt) or ONNX model ({type(exc).__name__})")
    if not any(is_probe(o.name) for o in model.graph.output):
        _fail(f"{path} has no gate traces: export it with --form decomposed --probe (or pass the checkpoint)")
    try:
        pred = Predictor.load(path, warn=False)
        x = _raw_input(inputs, pred.meta.get("feature_names"), pred.num_features)
        feeds = pred.feeds(x)
    except PredictorError as exc:
        _fail(f"{inputs}: {exc}")
    if pred.stateful:
        feeds.update(h0=pred.zero_state(x.shape[0]), c0=pred.zero_state(x.shape[0]))
    return onnx_traces(str(path), feeds), f"onnxruntime-cpu ({path.name})"
