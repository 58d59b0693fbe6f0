"""`lstm-pipeline deploy triton MODEL -o REPO`: a Triton model repository (docs/deploy.md)."""
from __future__ import annotations

from pathlib import Path

import click

from lstm_onnx.serving.triton_options import BACKENDS, INSTANCE_KINDS, TritonOptions

_DEFAULTS = TritonOptions()


@click.group()
def deploy():
    """Write what a serving system loads: a Triton model repository."""


@deploy.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="The model repository to write (tritonserver --model-repository OUT).")
@click.option("--name", default=_DEFAULTS.name, show_default=True, help="The model's name and folder.")
@click.option("--backend", type=click.Choice(BACKENDS), default=_DEFAULTS.backend, show_default=True,
              help="onnxruntime: Triton runs the model itself; python: Triton runs our model.py around it.")
@click.option("--max-batch-size", type=int, default=_DEFAULTS.max_batch_size, show_default=True,
              help="The largest batch Triton's batcher forms (config.pbtxt max_batch_size).")
@click.option("--preferred-batch-size", "preferred_batch_sizes", type=int, multiple=True,
              help="A batch size the batcher aims for (repeatable; default: any up to --max-batch-size).")
@click.option("--max-queue-delay-us", type=int, default=_DEFAULTS.max_queue_delay_us, show_default=True,
              help="How long the batcher waits to fill a batch.")
@click.option("--max-queue-size", type=int, default=_DEFAULTS.max_queue_size, show_default=True,
              help="Requests waiting before Triton rejects more (stateless models).")
@click.option("--instance-kind", type=click.Choice(INSTANCE_KINDS), default=_DEFAULTS.instance_kind,
              show_default=True, help="Where Triton runs the model instances (instance_group kind).")
@click.option("--instance-count", type=int, default=_DEFAULTS.instance_count, show_default=True,
              help="Model instances (per GPU with --instance-kind gpu).")
@click.option("--gpu", "gpus", type=int, multiple=True, help="A GPU to run on (repeatable; default: every GPU).")
@click.option("--force", is_flag=True, help="Replace OUT if it already holds a model repository.")
def triton(model, out, force, **settings):
    """Write a Triton model repository for MODEL (an export of `lstm-pipeline export`).

    A stateless export gets dynamic batching; a --stateful one gets sequence batching with implicit state
    (Triton keeps h and c per sequence). Raw features in, raw targets out: the normalization is folded in.
    """
    settings["preferred_batch_sizes"] = tuple(settings["preferred_batch_sizes"])
    settings["gpus"] = tuple(settings["gpus"])
    options = TritonOptions(**settings)
    problems = options.problems()
    if problems:  # before --backend python's load_onnx and atomic_repository (which makes OUT's parent)
        raise click.ClickException("; ".join(problems))
    from lstm_onnx.serving.triton_python_repo import write_python_repository
    from lstm_onnx.serving.triton_repo import RepositoryError, atomic_repository, write_onnx_repository

    try:
        if options.backend == "python":
            from lstm_onnx.cli.loading import load_onnx

            load_onnx(model)  # onnx's one-line refusal, before onnxruntime logs its own to stderr
            with atomic_repository(out, force) as staging:
                write_python_repository(model, staging, options)
            written = sorted(p for p in (Path(out) / options.name).rglob("*") if p.is_file())
        else:
            written = write_onnx_repository(model, out, options, force=force)
    except (RepositoryError, ValueError) as exc:
        raise click.ClickException(str(exc).strip().splitlines()[0]) from None
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"serve it: tritonserver --model-repository {out}  (model {options.name!r}, "
               f"{options.instance_kind} x{options.instance_count})")
