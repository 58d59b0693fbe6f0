"""`lstm-pipeline gates` on a checkpoint and on a probe export: the same report, plots, JSON, one-line errors."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from lstm_onnx.exporters.export import ExportOptions, export_checkpoint
from tests.helpers import make_checkpoint


@pytest.fixture
def files(tmp_path):
    ckpt = make_checkpoint(seed=5)
    ckpt.save(tmp_path / "m.pt")
    export_checkpoint(ckpt, tmp_path / "probe.onnx", ExportOptions(form="decomposed", probe=True))
    export_checkpoint(ckpt, tmp_path / "plain.onnx")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((2, 12, 3)).astype(np.float32))
    (tmp_path / "x.csv").write_text("f0,f1,f2\n" + "".join(f"{k},{-k},0.5\n" for k in range(8)))
    return tmp_path


def test_checkpoint_and_probe_export_agree(files):
    runner = CliRunner()
    out = [runner.invoke(cli, ["gates", str(files / m), str(files / "x.npy"), "--json"]) for m in ("m.pt", "probe.onnx")]
    assert [r.exit_code for r in out] == [0, 0], [r.output for r in out]
    a, b = (json.loads(r.stdout) for r in out)
    assert [g["gate"] for g in a["gates"]] == ["i", "f", "o"] and a["steps"] == 12
    for ga, gb in zip(a["gates"], b["gates"]):
        assert ga["mean_right_saturated"] == pytest.approx(gb["mean_right_saturated"], abs=1e-6)
        assert ga["peephole_share"] == pytest.approx(gb["peephole_share"], rel=1e-5)


def test_plots_lstmvis_and_csv(files):
    pytest.importorskip("matplotlib")
    pytest.importorskip("h5py")
    r = CliRunner().invoke(cli, ["gates", str(files / "m.pt"), str(files / "x.csv"), "-o", str(files / "png"),
                                 "--lstmvis", str(files / "lv")])
    assert r.exit_code == 0, r.output
    assert "peephole share" in r.output
    for p in ("png/saturation.png", "png/heatmaps.png", "lv/states.h5", "lv/lstm.yml"):
        assert (files / p).stat().st_size > 0


def test_errors_are_one_line(files):
    runner = CliRunner()
    r = runner.invoke(cli, ["gates", str(files / "plain.onnx"), str(files / "x.npy")])
    assert r.exit_code == 1 and "--form decomposed --probe" in r.output and "Traceback" not in r.output
    np.save(files / "bad.npy", np.zeros((2, 3, 5), np.float32))
    r = runner.invoke(cli, ["gates", str(files / "m.pt"), str(files / "bad.npy")])
    assert r.exit_code == 1 and "[batch, seq, 3]" in r.output
    r = runner.invoke(cli, ["gates", str(files / "m.pt"), str(files / "x.npy"), "--sequence", "9"])
    assert r.exit_code == 1 and "--sequence 9" in r.output
