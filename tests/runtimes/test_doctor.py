"""`lstm-pipeline doctor`: the fingerprint and the checks, through the CLI."""
import json

from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from tests.placement_fakes import move_lstm_nodes


def test_doctor_prints_the_machine_and_the_checks():
    out = CliRunner().invoke(cli, ["doctor"])
    assert out.exit_code == 0, out.output
    assert "ISA:" in out.output and "usable" in out.output
    assert "provider cpu  loads; an LSTM with P runs on CPUExecutionProvider\n" in out.output
    assert "this CPU's int8 GEMM path:" in out.output and "OMP_WAIT_POLICY=" in out.output


def test_doctor_json_and_a_node_placed_off_its_provider(monkeypatch):
    move_lstm_nodes(monkeypatch)  # what ORT's CUDA provider does with an LSTM with P
    out = CliRunner().invoke(cli, ["doctor", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["machine"]["cores"]["usable"] >= 1 and doc["machine"]["versions"]["onnxruntime"]
    assert doc["checks"]["provider cpu"] == ("loads; an LSTM with P runs on CUDAExecutionProvider (off the "
                                             "requested provider: export --form decomposed for it)")
