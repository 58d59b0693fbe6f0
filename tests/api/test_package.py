"""`from lstm_onnx import fit, export, Predictor`: importing the package loads no torch; fit trains exactly
what `train --csv` trains on the same data."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import lstm_onnx
from lstm_onnx.cli.main import cli


def test_importing_the_package_and_predictor_loads_no_torch():
    code = ("import sys, lstm_onnx; from lstm_onnx import Predictor; "
            "print('torch' in sys.modules, Predictor.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "lstm_onnx.runtimes.embed"]
    assert sorted(dir(lstm_onnx)) == ["Predictor", "export", "fit"]


def test_fit_on_arrays_equals_train_csv_on_the_file(tmp_path):
    values = np.cumsum(np.random.default_rng(2).normal(size=(200, 2)), axis=0)
    path = tmp_path / "d.csv"
    path.write_text("a,b\n" + "\n".join(f"{repr(float(a))},{repr(float(b))}" for a, b in values) + "\n")
    r = CliRunner().invoke(cli, ["-q", "train", "--csv", str(path), "--target", "b", "--window", "6",
                                 "--epochs", "1", "-o", str(tmp_path / "m.pt")])
    assert r.exit_code == 0, r.output
    from lstm_onnx.pipeline.checkpoint import load_checkpoint

    by_cli = load_checkpoint(tmp_path / "m.pt")
    by_fit = lstm_onnx.fit(values, target="b", columns=["a", "b"], window=6, config={"train": {"epochs": 1}})
    assert by_fit.config.model == by_cli.config.model
    for key, value in by_cli.state_dict.items():
        assert torch.equal(value, by_fit.state_dict[key]), key
    # the same through a mapping of columns, and through a DataFrame where pandas is installed
    as_dict = lstm_onnx.fit({"a": values[:, 0], "b": values[:, 1]}, target="b", window=6,
                            config={"train": {"epochs": 1}})
    assert all(torch.equal(v, as_dict.state_dict[k]) for k, v in by_cli.state_dict.items())
    pd = pytest.importorskip("pandas")
    as_frame = lstm_onnx.fit(pd.read_csv(path), target="b", window=6, config={"train": {"epochs": 1}})
    assert all(torch.equal(v, as_frame.state_dict[k]) for k, v in by_cli.state_dict.items())


def test_a_dataframe_with_datetimes_trains_and_forecasts(tmp_path):
    pd = pytest.importorskip("pandas")
    t = np.arange(60)
    frame = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=60, freq="h").repeat(2),
                          "id": ["x", "y"] * 60, "v": np.repeat(np.sin(t / 4), 2) + np.tile([0.0, 5.0], 60)})
    ckpt = lstm_onnx.fit(frame, target="v", series_column="id", window=4,
                         config={"model": {"hidden_size": 4}, "train": {"epochs": 1}})
    assert ckpt.columns["time"] == "when" and ckpt.feature_names == ["v"]  # the datetime column found
    lstm_onnx.export(ckpt, tmp_path / "m.onnx")
    out = lstm_onnx.Predictor.load(str(tmp_path / "m.onnx")).forecast(frame)
    assert out["id"] == ["x", "y"] and out["when"] == ["2024-01-03T12:00:00"] * 2


def test_fit_refuses_like_train(tmp_path):
    with pytest.raises(ValueError, match="no column 'y'"):
        lstm_onnx.fit({"a": [1.0] * 50}, target="y")
    with pytest.raises(ValueError, match="model.input_size is 3 but the data has 1 input feature"):
        lstm_onnx.fit({"a": list(range(80))}, target="a", window=4, features=["a"],
                      config={"model": {"input_size": 3}, "train": {"epochs": 1}})
    with pytest.raises(ValueError, match="another suffix than .toml"):  # the config would overwrite the checkpoint
        lstm_onnx.fit({"a": list(range(80))}, target="a", window=4, out=tmp_path / "m.toml")
    assert not (tmp_path / "m.toml").exists()


def test_fit_leaves_the_callers_run_config_alone():
    from lstm_onnx.pipeline.config import RunConfig, TrainConfig

    mine = RunConfig(train=TrainConfig(epochs=1))
    before = repr(mine)
    lstm_onnx.fit({"a": np.sin(np.arange(80) / 5), "b": np.cos(np.arange(80) / 5)}, target="b", window=4,
                  config=mine)
    assert repr(mine) == before
