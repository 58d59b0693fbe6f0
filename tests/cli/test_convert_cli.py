"""lstm-pipeline convert, and inspect/verify/predict on its .ort output: results and one-line refusals."""
import json

import numpy as np
from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from lstm_onnx.runtimes.ort_format import read_config
from tests import models


def exported(tmp_path):
    return models.export(models.checkpoint(), tmp_path / "m.onnx", stateful=True, lengths=True)


def test_convert_writes_ort_and_its_config_then_inspect_and_predict_read_it(tmp_path):
    model = exported(tmp_path)
    res = CliRunner().invoke(cli, ["convert", str(model), "-o", str(tmp_path / "m.ort"), "--optimize", "extended",
                                   "--json"])
    assert res.exit_code == 0, res.output
    done = json.loads(res.output)
    assert done["level"] == "extended" and read_config(done["config"])["ai.onnx"] == done["ops_converted"]["ai.onnx"]
    res = CliRunner().invoke(cli, ["inspect", str(tmp_path / "m.ort"), "--json"])
    contract = json.loads(res.output)["contract"]
    assert [(i["name"], i["dtype"]) for i in contract["inputs"]] == [
        ("x", "float32"), ("lengths", "int32"), ("h0", "float32"), ("c0", "float32")]
    assert contract["metadata_problems"] == [] and json.loads(res.output)["metadata"]["optimization"] == "extended"
    x = models.raw_inputs(np.random.default_rng(0), [6])[0][None]
    np.save(tmp_path / "x.npy", x)
    for path in ("m.onnx", "m.ort"):
        res = CliRunner().invoke(cli, ["predict", str(tmp_path / path), str(tmp_path / "x.npy"),
                                       "-o", str(tmp_path / f"{path}.npy")])
        assert res.exit_code == 0, res.output
    np.testing.assert_allclose(np.load(tmp_path / "m.ort.npy"), np.load(tmp_path / "m.onnx.npy"), atol=1e-5, rtol=1e-5)


def test_convert_writes_an_optimized_onnx_without_a_config(tmp_path):
    res = CliRunner().invoke(cli, ["convert", str(exported(tmp_path)), "-o", str(tmp_path / "opt.onnx")])
    assert res.exit_code == 0 and "optimization basic" in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "opt.onnx"]


def test_convert_refusals_are_one_line(tmp_path):
    model = exported(tmp_path)
    for args, words in ([str(model), "-o", str(tmp_path / "m.txt")], "name the output .ort"), \
                       ([str(tmp_path / "none.onnx"), "-o", str(tmp_path / "m.ort")], "model not found"):
        res = CliRunner().invoke(cli, ["convert", *args])
        assert res.exit_code == 1 and words in res.output and len(res.output.strip().splitlines()) == 1, res.output
    CliRunner().invoke(cli, ["convert", str(model), "-o", str(tmp_path / "m.ort")])
    res = CliRunner().invoke(cli, ["convert", str(tmp_path / "m.ort"), "-o", str(tmp_path / "x.ort")])
    assert res.exit_code == 1 and "already in ORT format" in res.output
    res = CliRunner().invoke(cli, ["verify", str(tmp_path / "m.ort")])
    assert res.exit_code != 0 and "verify it against its checkpoint" in res.output, res.output


def test_a_damaged_ort_file_is_one_line_everywhere(tmp_path):
    bad = tmp_path / "bad.ort"
    bad.write_bytes(b"\x10\x00\x00\x00ORTM" + b"\x01" * 50)  # ORT's file identifier, then garbage
    np.save(tmp_path / "x.npy", np.ones((1, 4, 3), np.float32))
    for args in (["inspect", str(bad)], ["verify", str(bad)], ["convert", str(bad), "-o", str(tmp_path / "x.ort")],
                 ["predict", str(bad), str(tmp_path / "x.npy")]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 1 and "not a readable ORT-format model" in res.output, (args, res.output)
        assert len(res.output.strip().splitlines()) == 1, res.output
