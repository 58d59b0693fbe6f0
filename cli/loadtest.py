"""`lstm-pipeline loadtest`: load any v2 server (ours, Triton, Ray Serve) over HTTP or gRPC (serving/loadgen.py)."""
from __future__ import annotations

import contextlib
import json

import click


def _numbers(text: str, kind, what: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: comma-separated {what}") from None
    if not values or any(v <= 0 for v in values):
        raise click.BadParameter(f"{text!r}: comma-separated {what}, each > 0")
    return values


@click.command()
@click.argument("url", required=False)
@click.option("--start", "start_model", type=click.Path(dir_okay=False, exists=True),
              help="Start `lstm-pipeline serve MODEL` on a free loopback port for the run, instead of a URL.")
@click.option("--serve-arg", "serve_args", multiple=True, help="An argument for the server --start starts "
              "(repeatable, e.g. --serve-arg=--max-batch --serve-arg=1).")
@click.option("--model-name", default="lstm", show_default=True, help="The v2 model name to infer on.")
@click.option("--protocol", type=click.Choice(["http", "grpc"]), default="http", show_default=True,
              help="HTTP/REST or gRPC (URL is then host:port of the gRPC endpoint).")
@click.option("--encoding", type=click.Choice(["binary", "json"]), default="binary", show_default=True,
              help="HTTP tensors: Triton's binary extension, or JSON numbers.")
@click.option("--streaming", is_flag=True, help="gRPC: send each client's requests over one ModelStreamInfer "
              "stream (perf_analyzer's --streaming) instead of a ModelInfer call each.")
@click.option("--concurrency", default="1,8,64", show_default=True,
              help="Comma-separated concurrency sweep: clients in a closed loop.")
@click.option("--rate", default=None, help="Comma-separated request-rate sweep (requests/s, open loop) instead "
                                           "of --concurrency.")
@click.option("--seconds", type=click.FloatRange(0.1, 600), default=5.0, show_default=True,
              help="Duration of each sweep step.")
@click.option("--steps", type=click.IntRange(1), default=50, show_default=True, help="Time steps per sequence.")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Sequences per request.")
@click.option("--sequence-chunks", type=click.IntRange(0), default=0, show_default=True,
              help="> 0: stream sequences of this many requests each (sequence_id, start, end); 0: stateless.")
@click.option("--check", "check_model", type=click.Path(dir_okay=False, exists=True),
              help="Check a sample of the answers against a local Predictor of this model file (--start: its "
                   "model by default).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the results to this file.")
def loadtest(url, start_model, serve_args, model_name, protocol, encoding, streaming, concurrency, rate, seconds,
             steps, batch, sequence_chunks, check_model, json_out):
    """Throughput and latency of a v2 server (perf_analyzer-style), with answers checked on a sample."""
    from lstm_onnx.core.fileio import ArtifactWriteError, atomic_path
    from lstm_onnx.serving.loadgen import LoadTestError, StartedServer, table

    if (url is None) == (start_model is None):
        raise click.UsageError("give a server URL or --start MODEL (one of them)")
    rates = _numbers(rate, float, "requests per second") if rate else []
    concurrencies = [] if rates else _numbers(concurrency, int, "client counts")
    predictor = None
    check_model = check_model or start_model
    if check_model:
        from lstm_onnx.runtimes.embed import Predictor, PredictorError

        try:
            predictor = Predictor.load(check_model, warn=False)
        except PredictorError as exc:
            raise click.ClickException(str(exc)) from None
    try:
        with contextlib.ExitStack() as stack:
            where = url
            if start_model:
                srv = stack.enter_context(StartedServer(start_model, [*serve_args, "--model-name", model_name],
                                                        grpc=protocol == "grpc"))
                where = f"127.0.0.1:{srv.grpc_port}" if protocol == "grpc" else f"http://127.0.0.1:{srv.port}"
            result = _run(where, model_name, protocol, encoding, streaming, steps, batch, sequence_chunks, seconds,
                          concurrencies, rates, predictor)
    except LoadTestError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(table(result))
    if json_out:
        try:
            with atomic_path(json_out) as tmp:
                tmp.write_text(json.dumps(result, indent=2))
        except ArtifactWriteError as exc:
            raise click.ClickException(str(exc)) from None
    wrong = sum(s.get("wrong", 0) for s in result["steps"])
    if wrong:
        raise click.ClickException(f"{wrong} answer(s) differ from the local Predictor beyond the tolerance")


def _run(url, model_name, protocol, encoding, streaming, steps, batch, chunks, seconds, concurrencies, rates,
         predictor):
    from lstm_onnx.serving.loadgen import LoadSpec, sweep

    spec = LoadSpec(url=url, model_name=model_name, protocol=protocol, encoding=encoding, steps=steps, batch=batch,
                    chunks=chunks, seconds=seconds, streaming=streaming)
    how = encoding if protocol == "http" else "streaming" if streaming else ""
    click.echo(f"{protocol} {how} {url} model {model_name!r}: {batch} x "
               f"{steps} steps per request{f', sequences of {chunks} requests' if chunks else ''}, {seconds:g} s a step",
               err=True)
    return sweep(spec, concurrencies, rates, predictor)
