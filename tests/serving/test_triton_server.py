"""A real tritonserver (nvidia-pytriton's, `make triton-venv`) serving our python-backend repositories, driven
by tritonclient.http from many threads: every answer equals a one-pass Predictor run of the same model."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from lstm_onnx.runtimes.embed import Predictor
from lstm_onnx.runtimes.tolerances import default_tolerance
from lstm_onnx.serving.triton_options import TritonOptions
from lstm_onnx.serving.triton_python_repo import write_python_repository
from lstm_onnx.serving.tritonserver import TritonNotFound, TritonServer, TritonServerError, find_tritonserver
from tests import models

httpclient = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http] (the triton extra)")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.slow
TOL = default_tolerance("float32")
THREADS = 16


@pytest.fixture(scope="module")
def install():
    try:
        return find_tritonserver()
    except TritonNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def exported(ckpt, serve_model, stateful_model, tmp_path_factory):
    """name -> (model file, streams): each path model.py can take (padded or grouped, zero or kept state)."""
    folder = tmp_path_factory.mktemp("m")
    plain = models.export(ckpt, folder / "plain.onnx")
    sequence = models.export(models.checkpoint(head="sequence", seed=5), folder / "seq.onnx", lengths=True)
    return {"plain": (plain, False),            # stateless, no lengths: one run per sequence length
            "sequence": (sequence, False),      # y at every step, padded batches: zero past each length
            "serve": (serve_model, False),      # stateful + lengths served statelessly: padded, zero state
            "streams": (stateful_model, True),  # sequences, no lengths: grouped, h/c kept per id
            "serve_streams": (serve_model, True)}


@pytest.fixture(scope="module")
def server(install, exported, tmp_path_factory):
    repo = tmp_path_factory.mktemp("triton")
    for name, (path, streams) in exported.items():
        write_python_repository(path, repo, TritonOptions(name=name, backend="python", max_batch_size=16,
                                                          max_queue_delay_us=5000), streams=streams)
    with TritonServer(repo, install, ready_timeout=90) as live:
        yield live


@pytest.fixture(scope="module")
def predictors(exported):
    return {name: Predictor.load(path) for name, (path, _) in exported.items()}


def close(got, want):
    np.testing.assert_allclose(got, want, atol=TOL.atol, rtol=TOL.rtol)


def tensor(name, a, datatype):
    t = httpclient.InferInput(name, list(a.shape), datatype)
    return t.set_data_from_numpy(a)


def infer(client, model, x, lengths=None, **sequence):
    inputs = [tensor("x", x, "FP32")]
    if lengths is not None:
        inputs.append(tensor("lengths", np.asarray(lengths, np.int32).reshape(-1, 1), "INT32"))
    return client.infer(model, inputs, **sequence).as_numpy("y")


def in_threads(server, jobs: list, work, threads: int = THREADS) -> list:
    """work(client, job) for every job, over `threads` threads with a client each; results in job order."""
    results, errors = [None] * len(jobs), []

    def run(first):
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            for k in range(first, len(jobs), threads):
                results[k] = work(client, jobs[k])
        except Exception as exc:  # surfaced below, in the test's thread
            errors.append(exc)
        finally:
            client.close()

    pool = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert not errors, errors[0]
    return results


def stats(server, model) -> dict:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        return client.get_inference_statistics(model)["model_stats"][0]
    finally:
        client.close()


@pytest.mark.parametrize("model", ["plain", "serve", "sequence"])
def test_concurrent_requests_equal_one_pass(server, predictors, model):
    rng = np.random.default_rng(1)
    jobs = []
    for k in range(96):
        n = 2 if k % 5 == 0 else 1  # some requests carry two sequences
        seq = int(rng.integers(1, 24))
        lengths = rng.integers(1, seq + 1, n) if model != "plain" and k % 3 == 0 else None
        jobs.append((np.stack(models.raw_inputs(rng, [seq] * n)), lengths))
    before = stats(server, model)
    got = in_threads(server, jobs, lambda client, job: infer(client, model, *job))
    for (x, lengths), y in zip(jobs, got):
        close(y, predictors[model].predict(x, lengths=lengths))
    after = stats(server, model)
    requests = after["inference_count"] - before["inference_count"]
    runs = after["execution_count"] - before["execution_count"]
    assert requests == sum(len(x) for x, _ in jobs)
    assert runs < len(jobs), f"no batches formed: {runs} executions for {len(jobs)} requests"


@pytest.mark.parametrize("model", ["streams", "serve_streams"])
def test_interleaved_streams_equal_one_pass(server, predictors, model):
    """Streams in lockstep rounds (a barrier per chunk), so each round's chunks meet in Triton's batcher; every
    chunk's y equals one pass over the stream's prefix up to it."""
    rng = np.random.default_rng(2)
    streams = 6
    chunks = [np.diff([0, *sorted(rng.choice(np.arange(1, 30), 3, replace=False)), 30]) for _ in range(streams)]
    whole = [models.raw_inputs(rng, [30])[0][None] for _ in range(streams)]
    barrier = threading.Barrier(streams)
    before = stats(server, model)

    def one_stream(client, k):
        out, t = [], 0
        for i, size in enumerate(chunks[k]):
            barrier.wait(60)
            out.append(infer(client, model, whole[k][:, t:t + size], sequence_id=1000 + k,
                             sequence_start=i == 0, sequence_end=i == len(chunks[k]) - 1))
            t += size
        return out

    got = in_threads(server, list(range(streams)), one_stream, threads=streams)  # one thread per stream
    for k in range(streams):
        for y, end in zip(got[k], np.cumsum(chunks[k])):
            close(y, predictors[model].predict(whole[k][:, :end]))
    after = stats(server, model)
    requests = after["inference_count"] - before["inference_count"]
    assert requests == sum(len(c) for c in chunks)
    assert after["execution_count"] - before["execution_count"] < requests, "no sequence batches formed"


def test_a_restarted_stream_begins_from_zero_state(server, predictors):
    client = httpclient.InferenceServerClient(server.http_url)
    x = models.raw_inputs(np.random.default_rng(3), [8])[0][None]
    infer(client, "streams", x[:, :5], sequence_id=77, sequence_start=True)
    y = infer(client, "streams", x[:, 5:], sequence_id=77, sequence_start=True, sequence_end=True)
    close(y, predictors["streams"].predict(x[:, 5:]))


def test_bad_requests_get_one_line_errors(server):
    client = httpclient.InferenceServerClient(server.http_url)
    x = models.raw_inputs(np.random.default_rng(4), [6])[0][None]
    bad = x.copy()
    bad[0, 2, 1] = np.nan
    with pytest.raises(InferenceServerException, match="NaN"):
        infer(client, "plain", bad)
    with pytest.raises(InferenceServerException, match=r"lengths must be 1 integers in 1\.\.6"):
        infer(client, "serve", x, lengths=[9])
    with pytest.raises(InferenceServerException, match="START"):  # Triton's own sequence check
        infer(client, "streams", x, sequence_id=555)
    close(infer(client, "plain", x), Predictor.load(server.repository / "plain" / "1" / "model.onnx").predict(x))


def test_no_venv_is_a_clear_reason(tmp_path):
    with pytest.raises(TritonNotFound, match="make triton-venv"):
        find_tritonserver(tmp_path / "nowhere")


def test_a_broken_repository_fails_in_one_line_with_the_log(install, tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\nnot_a_field: 1\n')
    with pytest.raises(TritonServerError, match="tritonserver exited with code") as err:
        TritonServer(tmp_path, install, ready_timeout=60).start()
    assert "\n" not in str(err.value) and "not_a_field" in str(err.value)


@pytest.mark.parametrize("protocol, model, chunks", [("http", "serve", 0), ("grpc", "serve", 0),
                                                     ("http", "serve_streams", 3), ("grpc", "serve_streams", 3)])
def test_loadtest_runs_against_tritonserver_and_checks_its_answers(server, predictors, protocol, model, chunks):
    """`lstm-pipeline loadtest` pointed at Triton itself, over HTTP and gRPC, stateless and sequences (Triton's
    sequence batcher): no errors, and a sample of Triton's answers equal to one Predictor pass."""
    pytest.importorskip("tritonclient.grpc", reason="needs tritonclient[grpc] (the triton extra)")
    from lstm_onnx.serving.loadgen import LoadSpec, sweep

    url = server.http_url if protocol == "http" else f"127.0.0.1:{server.grpc_port}"
    spec = LoadSpec(url=url, model_name=model, protocol=protocol, steps=5, chunks=chunks, seconds=0.6,
                    check_every=2)
    (step,) = sweep(spec, concurrencies=[4], predictor=predictors[model])["steps"]
    assert step["requests"] > 0 and step["errors"] == 0, step
    assert step["checked"] > 0 and step["wrong"] == 0, step
