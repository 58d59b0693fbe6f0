"""`lstm-pipeline serve` refuses bad models and settings with one line, before binding anything."""
import pytest
from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from tests import models


def run(*args):
    return CliRunner().invoke(cli, ["serve", *args])


def test_missing_model(tmp_path):
    r = run(str(tmp_path / "none.onnx"))
    assert r.exit_code == 1 and "model not found" in r.output and "Traceback" not in r.output


def test_bad_setting(serve_model):
    r = run(str(serve_model), "--max-batch", "0")
    assert r.exit_code == 1 and "max_batch must be >= 1" in r.output


def test_static_shapes_are_refused(tmp_path):
    from lstm_onnx.exporters.export import ExportOptions, export_checkpoint

    path = tmp_path / "unrolled.onnx"
    export_checkpoint(models.checkpoint(), path, ExportOptions(form="unrolled", seq_len=4, batch_size=1))
    r = run(str(path))
    assert r.exit_code == 1 and "fixed batch/sequence sizes" in r.output


@pytest.fixture
def started(monkeypatch):
    """The settings `serve` would start the server with (nothing binds)."""
    from lstm_onnx.serving import server

    seen = []
    monkeypatch.setattr(server, "serve", lambda settings: seen.append(settings))
    return seen


def test_defaults_are_the_settings_defaults(serve_model, started):
    from lstm_onnx.serving.settings import ServeSettings

    assert run(str(serve_model)).exit_code == 0
    assert started == [ServeSettings(model=str(serve_model))]


def test_each_option_reaches_its_setting(serve_model, started):
    from lstm_onnx.serving.settings import ServeSettings

    r = run(str(serve_model), "--host", "0.0.0.0", "--port", "9001", "--workers", "2", "--threads", "3",
            "--max-batch", "8", "--max-wait-ms", "0.5", "--max-queue", "10", "--max-seq-len", "50",
            "--session-ttl", "7", "--max-sessions", "4", "--strict-placement", "--allow-tf32")
    assert r.exit_code == 0, r.output
    assert started == [ServeSettings(model=str(serve_model), host="0.0.0.0", port=9001, workers=2, threads=3,
                                     max_batch=8, max_wait_ms=0.5, max_queue=10, max_seq_len=50, session_ttl_s=7.0,
                                     max_sessions=4, strict_placement=True, allow_tf32=True)]


def test_strict_placement_refuses_to_start_in_one_line(serve_model, monkeypatch):
    from tests.placement_fakes import move_lstm_nodes

    move_lstm_nodes(monkeypatch)
    monkeypatch.setattr("uvicorn.Server.run", lambda self, sockets=None: pytest.fail("the server started"))
    r = run(str(serve_model), "--strict-placement")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.output.startswith("Error: --strict-placement: Predictor(cpu): LSTM node") and "--form decomposed" in r.output


@pytest.mark.parametrize("port", ["70000", "0", "-1", "65536"])
def test_a_port_out_of_range_is_one_line(port, started):
    """Issue 14: --port 70000 listened on 4464 (70000 mod 65536) and logged 70000."""
    r = run("model.onnx", "--port", port)  # refused before the model is even looked for
    assert r.exit_code == 1 and r.output == f"Error: port must be 1..65535, got {port}\n" and not started


@pytest.mark.parametrize("option, value, words", [("--header-timeout", "0", "header_timeout_s must be > 0"),
                                                  ("--body-timeout", "nan", "body_timeout_s must be > 0"),
                                                  ("--max-header-bytes", "0", "max_header_bytes must be >= 1"),
                                                  ("--graceful-timeout", "-1", "graceful_timeout_s must be >= 0")])
def test_bad_limits_are_one_line(option, value, words, started):
    r = run("model.onnx", option, value)
    assert r.exit_code == 1 and words in r.output and r.output.count("\n") == 1 and not started


def test_the_limits_reach_their_settings(serve_model, started):
    r = run(str(serve_model), "--max-header-bytes", "1000", "--header-timeout", "2", "--body-timeout", "3",
            "--graceful-timeout", "4")
    assert r.exit_code == 0, r.output
    s = started[0]
    assert (s.max_header_bytes, s.header_timeout_s, s.body_timeout_s, s.graceful_timeout_s) == (1000, 2, 3, 4)


def test_a_queue_deadline_within_the_batch_wait_is_one_line(serve_model, started):
    """--queue-timeout 0.01 with --max-wait-ms 50: every batch that waits for company would time out."""
    r = run(str(serve_model), "--queue-timeout", "0.01", "--max-wait-ms", "50")
    assert r.exit_code == 1 and "queue_timeout_s (0.01) must be more than max_wait_ms (50 ms)" in r.output, r.output
    assert r.output.count("\n") == 1 and not started


@pytest.mark.parametrize("host, words", [("256.1.1.1", "cannot listen on 256.1.1.1:"),
                                         ("127.0.0.1", "Address already in use")])
def test_an_address_it_cannot_listen_on_is_one_line(serve_model, monkeypatch, host, words):
    """--host 256.1.1.1 ended in uvicorn's own error line and exit 3; a port in use likewise."""
    import socket

    monkeypatch.setattr("lstm_onnx.serving.app.create_app", lambda *a, **k: pytest.fail("the model was loaded"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        r = run(str(serve_model), "--host", host, "--port", str(taken.getsockname()[1]))
    assert r.exit_code == 1 and r.output.startswith("Error: ") and words in r.output, r.output
    assert r.output.count("\n") == 1 and "Traceback" not in r.output


def test_ray_grpc_port_in_use_is_one_line_before_ray_starts(serve_model, monkeypatch):
    import socket

    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        r = run(str(serve_model), "--engine", "ray", "--grpc-port", str(taken.getsockname()[1]))
    assert r.exit_code == 1 and "cannot listen on 0.0.0.0:" in r.output, r.output
    assert r.output.count("\n") == 1 and "Traceback" not in r.output


def test_ray_app_builder_refuses_grpc_port_with_where_to_set_it():
    from lstm_onnx.serving.ray_app import app_builder

    with pytest.raises(ValueError, match="serve start --grpc-port N --grpc-servicer-functions "
                                         "lstm_onnx.serving.ray_grpc.add_servicer"):
        app_builder({"model": "m.onnx", "grpc_port": "9001"})
