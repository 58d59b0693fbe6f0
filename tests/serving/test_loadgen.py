"""The load generator against a live server: each protocol, stateless and sequences, with answers checked
against a local Predictor; a server that answers wrongly must be caught by the check."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from lstm_onnx.runtimes.embed import Predictor
from lstm_onnx.serving.loadgen import LoadSpec, LoadTestError, sweep
from lstm_onnx.serving.settings import ServeSettings
from lstm_onnx.serving.tritonserver import free_port
from tests.serving.harness_tools import Live

pytest.importorskip("tritonclient.grpc", reason="needs tritonclient[grpc] (the triton extra)")



@pytest.fixture(scope="module")
def live(serve_model):
    with Live(ServeSettings(model=str(serve_model), model_name="m", grpc_port=free_port(), max_wait_ms=1.0)) as s:
        yield s


@pytest.fixture(scope="module")
def predictor(serve_model):
    return Predictor.load(serve_model)


@pytest.mark.parametrize("protocol, encoding, chunks, streaming", [
    ("http", "binary", 0, False), ("http", "json", 0, False), ("grpc", "binary", 0, False),
    ("http", "binary", 3, False), ("grpc", "binary", 3, False), ("grpc", "binary", 0, True),
    ("grpc", "binary", 3, True)])
def test_each_protocol_runs_and_its_answers_check(live, predictor, protocol, encoding, chunks, streaming):
    url = f"127.0.0.1:{live.settings.grpc_port}" if protocol == "grpc" else f"http://127.0.0.1:{live.port}"
    spec = LoadSpec(url=url, model_name="m", protocol=protocol, encoding=encoding, steps=6, batch=1 if chunks else 2,
                    chunks=chunks, streaming=streaming, seconds=0.4, check_every=3)
    result = sweep(spec, concurrencies=[1, 4], predictor=predictor)
    for step in result["steps"]:
        assert step["requests"] > 0 and step["errors"] == 0, step
        assert step["checked"] > 0 and step["wrong"] == 0, step
        assert step["p50_ms"] <= step["p90_ms"] <= step["p99_ms"]


def test_a_wrong_answer_is_caught(live, predictor, monkeypatch):
    """The check must be able to fail: the server's y shifted by 1e-3 (ten times the float32 tolerance)."""
    original = Predictor.run_ragged

    def shifted(self, xs, states=None, keep_state=True):
        return [dict(r, y=r["y"] + 1e-3) for r in original(self, xs, states, keep_state)]

    monkeypatch.setattr(Predictor, "run_ragged", shifted)
    spec = LoadSpec(url=f"http://127.0.0.1:{live.port}", model_name="m", steps=5, seconds=0.3, check_every=1)
    (step,) = sweep(spec, concurrencies=[2], predictor=predictor)["steps"]
    assert step["checked"] > 0 and step["wrong"] == step["checked"]


def test_a_stream_error_fails_its_request_not_the_stream(live, predictor):
    """An error on a ModelStreamInfer stream is that response's error_message: the client raises it, and the
    stream stays usable for its next request (an unknown model here, so that one fails the same way)."""
    import asyncio

    from lstm_onnx.serving.loadgen import GrpcClient

    async def main():
        client = GrpcClient(LoadSpec(url=f"127.0.0.1:{live.settings.grpc_port}", model_name="nope", streaming=True))
        x = np.zeros((1, 3, predictor.num_features), np.float32)
        try:
            errors = []
            for _ in range(2):
                with pytest.raises(ConnectionError) as info:
                    await client.infer(x, None)
                errors.append(str(info.value))
            return errors
        finally:
            await client.aclose()

    assert all("unknown model" in e for e in asyncio.run(main()))


def test_streaming_is_a_grpc_option(live):
    with pytest.raises(LoadTestError, match="gRPC option"):
        sweep(LoadSpec(url=f"http://127.0.0.1:{live.port}", model_name="m", streaming=True, seconds=0.1),
              concurrencies=[1])


def test_a_rate_step(live):
    spec = LoadSpec(url=f"http://127.0.0.1:{live.port}", model_name="m", steps=5, seconds=0.5, check_every=0)
    (step,) = sweep(spec, rates=[40])["steps"]
    assert step["errors"] == 0 and 10 <= step["requests"] <= 25 and step["rate"] == 40


def test_no_server_or_unknown_model_is_one_error(live):
    with pytest.raises(LoadTestError, match="no v2 server"):
        sweep(LoadSpec(url=f"http://127.0.0.1:{free_port()}", seconds=0.1), concurrencies=[1])
    with pytest.raises(LoadTestError, match="Request for unknown model"):
        sweep(LoadSpec(url=f"http://127.0.0.1:{live.port}", model_name="nope", seconds=0.1), concurrencies=[1])


def test_cli_against_a_live_server_writes_json(live, serve_model, tmp_path):
    out = tmp_path / "load.json"
    r = CliRunner().invoke(cli, ["loadtest", f"127.0.0.1:{live.settings.grpc_port}", "--protocol", "grpc",
                                 "--model-name", "m", "--concurrency", "2", "--seconds", "0.3", "--steps", "4",
                                 "--check", str(serve_model), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "p99 ms" in r.output and out.exists()


@pytest.mark.parametrize("args, words", [([], "give a server URL or --start MODEL"),
                                         (["http://x", "--concurrency", "0"], "each > 0"),
                                         (["http://x", "--rate", "a,b"], "requests per second")])
def test_cli_bad_options_are_one_line(args, words):
    r = CliRunner().invoke(cli, ["loadtest", *args])
    assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_cli_starts_our_server(serve_model):
    r = CliRunner().invoke(cli, ["loadtest", "--start", str(serve_model), "--concurrency", "2", "--seconds", "0.5",
                                 "--steps", "4", "--sequence-chunks", "2"])
    assert r.exit_code == 0, r.output
    assert "wrong" in r.output


def test_a_sequence_head_stream_checks_against_the_steps_it_answered(tmp_path):
    """A sequence head answers y for the request's steps only; the check compares them with the same steps of
    one pass over the whole prefix (it compared the whole prefix, and failed every chunk after the first)."""
    from tests import models

    path = models.export(models.checkpoint(head="sequence", seed=3), tmp_path / "seq.onnx", stateful=True)
    with Live(ServeSettings(model=str(path), model_name="s", max_wait_ms=1.0)) as server:
        spec = LoadSpec(url=f"http://127.0.0.1:{server.port}", model_name="s", steps=4, chunks=3, seconds=0.4,
                        check_every=1)
        (step,) = sweep(spec, concurrencies=[2], predictor=Predictor.load(path))["steps"]
    assert step["errors"] == 0 and step["checked"] > 3 and step["wrong"] == 0, step
