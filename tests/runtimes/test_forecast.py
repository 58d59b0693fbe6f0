"""Predictor.forecast on a table: per-series statistics from the metadata, windows made as training made them,
each forecast labelled with its series and the time it is for; against the ONNX session run by hand."""
import numpy as np
import onnxruntime as ort
import pytest

from lstm_onnx.runtimes.embed import Predictor, PredictorError

pytest.importorskip("torch")  # the model is trained here


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from lstm_onnx import export, fit

    d = tmp_path_factory.mktemp("forecast")
    t = np.arange(120)
    table = {"day": [str(np.datetime64("2024-01-01") + k) for k in t] * 2,
             "shop": ["small"] * 120 + ["big"] * 120,
             "sales": list(10 + np.sin(t / 3)) + list(1000 + 100 * np.sin(t / 3)),
             "price": list(np.cos(t / 5)) * 2}
    ckpt = fit(table, target="sales", time_column="day", series_column="shop", window=5, normalize="series",
               config={"model": {"hidden_size": 8}, "train": {"epochs": 1}})
    export(ckpt, d / "m.onnx")
    return Predictor.load(str(d / "m.onnx"), warn=False), table, ckpt


def test_each_series_uses_its_own_statistics(model):
    pred, table, ckpt = model
    out = pred.forecast(table)
    assert out["shop"] == ["small", "big"] and out["day"] == ["2024-04-30", "2024-04-30"]
    session = ort.InferenceSession(pred.model_path, providers=["CPUExecutionProvider"])
    for k, shop in enumerate(out["shop"]):
        rows = [i for i, s in enumerate(table["shop"]) if s == shop][-5:]
        x = np.array([[table["sales"][i], table["price"][i]] for i in rows], np.float32)
        norm = ckpt.series_normalization[shop]
        y = session.run(["y"], {"x": ((x - norm.input_mean) / norm.input_std)[None].astype(np.float32)})[0]
        np.testing.assert_allclose(out["sales"][k], y[0, 0] * norm.target_std[0] + norm.target_mean[0], rtol=1e-5)
    # the global statistics would put the small shop's forecast among the big one's: per series matters here
    assert abs(out["sales"][0] - 10) < 50 and abs(out["sales"][1] - 1000) < 500


def test_rolling_gives_one_forecast_per_window_and_reads_times_from_the_table(model):
    pred, table, _ = model
    out = pred.forecast(table, rolling=True)
    assert len(out["sales"]) == 2 * (120 - 5 + 1)
    assert out["day"][0] == table["day"][5] and out["day"][115] == "2024-04-30"


def test_bad_tables_are_one_line(model):
    pred, table, _ = model
    with pytest.raises(PredictorError, match="no column\\(s\\) 'price'"):
        pred.forecast({k: v for k, v in table.items() if k != "price"})
    with pytest.raises(PredictorError, match="unknown series 'new'"):
        pred.forecast({**table, "shop": ["new"] * 240})
    short = {k: v[:3] for k, v in table.items()}
    with pytest.raises(PredictorError, match="series 'small' has 3 row\\(s\\); the model reads windows of 5"):
        pred.forecast(short)
    with pytest.raises(PredictorError, match="row 4, column 'sales': 'x' is not a number"):
        pred.forecast({**table, "sales": table["sales"][:4] + ["x"] + table["sales"][5:]})


def test_damaged_column_roles_are_refused_at_load(model, tmp_path):
    import onnx

    pred, _, _ = model
    m = onnx.load(pred.model_path)
    for p in m.metadata_props:
        if p.key == "lstm_onnx.columns":
            p.value = '{"features": ["sales"], "targets": ["sales"], "window": "5"}'
    onnx.save(m, tmp_path / "bad.onnx")
    with pytest.raises(PredictorError, match="metadata lstm_onnx.columns must hold"):
        Predictor.load(str(tmp_path / "bad.onnx"), warn=False)


def test_per_series_models_need_the_series_and_stream_with_its_statistics(model, tmp_path):
    from lstm_onnx import export

    pred, table, ckpt = model
    x = np.array([[[table["sales"][i], table["price"][i]] for i in range(120, 130)]], np.float32)  # shop "big"
    with pytest.raises(PredictorError, match="pass series="):
        pred.predict(x)
    whole = pred.predict(x, series=["big"])
    export(ckpt, tmp_path / "s.onnx", stateful=True)
    stateful = Predictor.load(str(tmp_path / "s.onnx"), warn=False)
    with pytest.raises(PredictorError, match="stream\\(series=ID\\)"):
        stateful.stream()
    for fold in (True, False):
        stepper = stateful.stream(series="big", fold=fold)
        for t in range(10):
            y = stepper.step(x[:, t])
        np.testing.assert_allclose(y, whole, rtol=1e-5)
    assert not np.allclose(stateful.predict(x, series=["small"]), whole, rtol=1e-2)
