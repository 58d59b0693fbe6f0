"""runtimes.embed: raw-in/raw-out predictions against PyTorch, padded lengths, streaming, input checks."""
import numpy as np
import pytest

from lstm_onnx.runtimes.embed import Predictor, PredictorError
from lstm_onnx.runtimes.tolerances import default_tolerance
from tests import models

TOL = default_tolerance("float32")


@pytest.fixture(scope="module")
def ckpt():
    return models.checkpoint()


@pytest.fixture(scope="module")
def paths(ckpt, tmp_path_factory):
    d = tmp_path_factory.mktemp("embed")
    return {"plain": models.export(ckpt, d / "plain.onnx"),
            "serve": models.export(ckpt, d / "serve.onnx", stateful=True, lengths=True),
            "stateful": models.export(ckpt, d / "stateful.onnx", stateful=True)}


def close(a, b):
    np.testing.assert_allclose(a, b, atol=TOL.atol, rtol=TOL.rtol)


@pytest.mark.parametrize("kind", ["plain", "serve", "stateful"])
def test_predict_is_raw_in_raw_out(ckpt, paths, kind):
    x = np.stack(models.raw_inputs(np.random.default_rng(0), [6, 6]))
    close(Predictor.load(paths[kind]).predict(x), models.torch_reference(ckpt, x))


@pytest.mark.parametrize("kind", ["plain", "serve"])  # padded run with sequence_lens, and grouped by length
def test_predict_with_lengths_equals_each_item_alone(ckpt, paths, kind):
    rng = np.random.default_rng(1)
    x = np.stack(models.raw_inputs(rng, [9, 9, 9]))
    lengths = [9, 4, 1]
    y = Predictor.load(paths[kind]).predict(x, lengths=lengths)
    for k, n in enumerate(lengths):
        close(y[k], models.torch_reference(ckpt, x[k:k + 1, :n])[0])


def test_run_ragged_carries_states(paths):
    p = Predictor.load(paths["serve"])
    x = models.raw_inputs(np.random.default_rng(2), [7])[0]
    first = p.run_ragged([x[:3]])[0]
    second = p.run_ragged([x[3:], x[:2]], [(first["hn"], first["cn"]), None])
    close(second[0]["y"], p.predict(x[None])[0])
    close(second[1]["y"], p.predict(x[None, :2])[0])


def test_run_ragged_leaves_out_the_states_not_kept(paths):
    p = Predictor.load(paths["serve"])
    xs = models.raw_inputs(np.random.default_rng(4), [5, 5, 3])
    full = p.run_ragged(xs)
    some = p.run_ragged(xs, None, [True, False, False])
    assert "hn" in some[0] and "hn" not in some[1] and "cn" not in some[2]
    close(some[0]["hn"], full[0]["hn"])
    for a, b in zip(some, full):
        close(a["y"], b["y"])
    assert all(set(r) == {"y"} for r in p.run_ragged(xs, None, False))


@pytest.mark.parametrize("kind", ["serve", "stateful"])
def test_stream_in_chunks_equals_one_pass(ckpt, paths, kind):
    x = np.stack(models.raw_inputs(np.random.default_rng(3), [10, 10]))
    stepper = Predictor.load(paths[kind]).stream(batch=2)
    t = 0
    for k in (1, 4, 2, 3):
        y = stepper.step(x[:, t] if k == 1 else x[:, t:t + k])
        t += k
        close(y, models.torch_reference(ckpt, x[:, :t]))
    assert stepper.steps == 10
    stepper.reset()
    close(stepper.step(x[:, 0]), models.torch_reference(ckpt, x[:, :1]))


def test_sequence_head_masks_padding(tmp_path):
    ckpt = models.checkpoint(head="sequence")
    p = Predictor.load(models.export(ckpt, tmp_path / "seq.onnx", lengths=True))
    x = np.stack(models.raw_inputs(np.random.default_rng(4), [5, 5]))
    y = p.predict(x, lengths=[5, 2])
    close(y[1, :2], models.torch_reference(ckpt, x[1:, :2])[0])
    assert (y[1, 2:] == 0).all()


@pytest.mark.parametrize("bad, words", [
    (np.zeros((1, 2, 4)), "expected [batch, seq, 3]"),
    (np.zeros((1, 0, 3)), "empty"),
    (np.full((1, 2, 3), np.nan), "NaN or Inf"),
    (np.array([[[1.0, np.inf, 2.0]]]), "NaN or Inf"),
    ([[["a", "b", "c"]]], "numbers"),
])
def test_bad_inputs_say_what_was_expected(paths, bad, words):
    p = Predictor.load(paths["serve"])
    with pytest.raises(PredictorError, match=words.replace("[", r"\[")):
        p.predict(bad)


def test_finite_values_whose_sum_overflows_pass_the_check(paths):
    p = Predictor.load(paths["serve"])
    x = np.full((1, 2, 3), 0.99 * p.safe_abs, np.float32)  # each value finite, also once normalized
    assert float(x[0, 0, 0]) * x.size > float(np.finfo(np.float32).max)  # ...but their sum is inf in float32
    assert p.check_input(x) is not None


def test_misuse_is_refused(paths):
    with pytest.raises(PredictorError, match="--stateful"):
        Predictor.load(paths["plain"]).stream()
    with pytest.raises(PredictorError, match="lengths must be"):
        Predictor.load(paths["serve"]).predict(np.zeros((2, 3, 3)), lengths=[4, 1])
    with pytest.raises(PredictorError, match="batch 2"):
        Predictor.load(paths["serve"]).stream(batch=2).step(np.zeros((1, 3)))
    with pytest.raises(PredictorError, match="cannot load"):
        Predictor.load(paths["plain"].parent / "missing.onnx")


@pytest.fixture(scope="module")
def unrolled(ckpt, tmp_path_factory):
    from lstm_onnx.exporters.export import ExportOptions, export_checkpoint

    path = tmp_path_factory.mktemp("embed") / "unrolled.onnx"
    export_checkpoint(ckpt, path, ExportOptions(form="unrolled", seq_len=4, batch_size=1, stateful=True))
    return path


def test_an_unrolled_model_says_which_shape_it_takes(ckpt, unrolled):
    p = Predictor.load(unrolled)
    x = np.stack(models.raw_inputs(np.random.default_rng(6), [4]))
    close(p.predict(x), models.torch_reference(ckpt, x))  # its own shape runs
    for bad in (np.zeros((1, 5, 3)), np.zeros((2, 4, 3))):
        with pytest.raises(PredictorError, match=r"takes \[batch, seq\] = \[1, 4\] only .*--form native"):
            p.predict(bad)


@pytest.mark.parametrize("fold", [True, False])
def test_a_stream_step_onnxruntime_refuses_is_a_predictor_error(unrolled, fold):
    stepper = Predictor.load(unrolled).stream(fold=fold)
    with pytest.raises(PredictorError, match=r"\[1, 4\] only .*got \[1, 1\]"):
        stepper.step(np.zeros((1, 3)))
    assert stepper.step(np.zeros((1, 4, 3))).shape == (1, models.O)  # the stream is still usable


def test_other_onnxruntime_refusals_are_predictor_errors(paths):
    p = Predictor.load(paths["plain"])
    with pytest.raises(PredictorError, match="onnxruntime refused the input"):
        p.run({"x": np.zeros((1, 2, 3), np.float64)})  # the wrong dtype: ORT's InvalidArgument


def test_a_model_without_our_input_names_is_refused_at_load(paths, tmp_path):
    import onnx

    model = onnx.load(str(paths["plain"]))
    model.graph.input[0].name = "input"
    for node in model.graph.node:
        node.input[:] = ["input" if name == "x" else name for name in node.input]
    onnx.save(model, tmp_path / "renamed.onnx")
    with pytest.raises(PredictorError, match=r"inputs \['input'\].*input `x`"):
        Predictor.load(tmp_path / "renamed.onnx")


@pytest.fixture(scope="module")
def tiny_std_model(tmp_path_factory):
    """Trained on a near-constant feature: its std makes normalization scale by 1e30."""
    ckpt = models.checkpoint()
    ckpt.normalization.input_std[:] = 1e-30
    return models.export(ckpt, tmp_path_factory.mktemp("m") / "tiny-std.onnx", stateful=True)


def test_values_that_overflow_once_normalized_are_refused(tiny_std_model):
    """A finite float32 input of 1e9 becomes 1e39 (inf) once normalized, and the model would compute on inf."""
    p = Predictor.load(tiny_std_model)
    assert 3e8 < p.safe_abs < 4e8  # float32 max / 1e30
    x = np.full((1, 4, models.F), 1e9, np.float32)
    with np.errstate(over="ignore"):
        assert np.isinf(p.normalize(x)).all()  # what the model would have been fed without the check
    with pytest.raises(PredictorError, match="overflow float32 once normalized.*under 3.4e"):
        p.predict(x)
    assert np.isfinite(p.predict(np.full((1, 4, models.F), 1e8, np.float32))).all()


def test_a_model_whose_every_std_is_above_1_loads_without_a_warning(tmp_path):
    """Scaling by 1/std < 1 cannot overflow any finite float32: the bound is float32's largest value, computed
    without an overflowing cast (that printed a RuntimeWarning on every load of such a model)."""
    import warnings

    ckpt = models.checkpoint()
    ckpt.normalization.input_std[:] = [2.0, 5.0, 1e6]
    path = models.export(ckpt, tmp_path / "wide-std.onnx", stateful=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = Predictor.load(path)
        assert p.safe_abs == float(np.finfo(np.float32).max)
        x = np.full((1, 4, models.F), 3e38, np.float32)
        assert p.range_problem(x) is None and np.isfinite(p.normalize(x)).all()
        seven = np.full((1, 4, models.F), 7, np.float32)
        close(p.predict(seven), models.torch_reference(ckpt, seven))
