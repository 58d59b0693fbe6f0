"""split_metrics: per-series test metrics, each equal to numpy on that series' windows, and the overall figure
pooled from them exactly."""
import numpy as np
import pytest

from lstm_onnx.pipeline.config import DataConfig, RunConfig
from lstm_onnx.pipeline.data import load_dataset
from lstm_onnx.pipeline.metrics import split_metrics
from tests.pipeline.test_data import long_table


@pytest.mark.parametrize("normalize", ["global", "series"])
def test_per_series_metrics_equal_numpy_and_pool_to_the_overall(tmp_path, normalize):
    config = RunConfig(data=DataConfig(task="csv", csv=str(long_table(tmp_path)), window=4, series_column="id",
                                       targets=["v"], normalize=normalize, val_fraction=0.2, test_fraction=0.2))
    data = load_dataset(config.data)
    test = data.test
    pred = test.y + np.random.default_rng(0).normal(0, 0.1, test.y.shape).astype(np.float32)
    got = split_metrics(pred, test, config, data)
    # the metric restores raw values near 1000 in float32 before subtracting: two ulps there
    tol = dict(rtol=1e-5, atol=2 * float(np.spacing(np.float32(1040))))
    errors = []
    for k, name in enumerate(data.series_names):
        norm, idx = data.normalization_of(name), test.series == k
        err = (pred[idx] - test.y[idx]) * norm.target_std  # raw units: the means cancel
        errors.append(err)
        part = got["per_series"][name]
        assert part["windows"] == idx.sum()
        np.testing.assert_allclose(part["rmse"], np.sqrt(np.mean(err ** 2)), **tol)
        np.testing.assert_allclose(part["mae"], np.mean(np.abs(err)), **tol)
    every = np.concatenate(errors)
    np.testing.assert_allclose(got["rmse"], np.sqrt(np.mean(every ** 2)), **tol)
    np.testing.assert_allclose(got["mae"], np.mean(np.abs(every)), **tol)
    np.testing.assert_allclose(got["per_target"]["v"]["rmse"], got["rmse"], rtol=1e-6)
