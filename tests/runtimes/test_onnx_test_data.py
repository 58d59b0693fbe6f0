"""ONNX's backend test format (runtimes/onnx_test_data.py): reading, writing, verify --test-data, and ONNX's
own test_lstm_* node tests run through verify."""
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from lstm_onnx.runtimes.capabilities import REFUSED, model_features, shortfalls
from lstm_onnx.runtimes.onnx_reference import sequence_lens_honoured, unsupported_features
from lstm_onnx.runtimes.onnx_test_data import onnx_lstm_tests, read_data_sets, read_test_data, write_test_data
from lstm_onnx.runtimes.verify import FAILED, PASSED, VerifyOptions, verify_model
from lstm_onnx.runtimes.verify_data_sets import TEST_DATA, read_checked, verify_test_data

I, H = 2, 3


def small_lstm(path):
    """One LSTM node: inputs X [seq, batch, I] and initial_h [1, batch, H]; W, R as initializers."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("W", (1, 4 * H, I)), ("R", (1, 4 * H, H)))]
    ins = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["seq", "batch", I]),
           helper.make_tensor_value_info("initial_h", TensorProto.FLOAT, [1, "batch", H])]
    outs = [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "batch", H])]
    node = helper.make_node("LSTM", ["X", "W", "R", "", "", "initial_h"], ["", "Y_h"], hidden_size=H)
    model = helper.make_model(helper.make_graph([node], "small", ins, outs, inits),
                              opset_imports=[helper.make_opsetid("", 14)])
    onnx.save(model, path)
    return path


def arrays(seed=0, batch=2, seq=5):
    rng = np.random.default_rng(seed)
    feeds = {"X": rng.standard_normal((seq, batch, I)).astype(np.float32),
             "initial_h": rng.standard_normal((1, batch, H)).astype(np.float32)}
    return feeds, {"Y_h": rng.standard_normal((1, batch, H)).astype(np.float32)}


@pytest.fixture
def written(tmp_path):
    model = small_lstm(tmp_path / "small.onnx")
    feeds, outputs = arrays()
    folder = write_test_data(tmp_path / "td", model, feeds, outputs)
    return folder, feeds, outputs


def put(path, value, name):
    path.write_bytes(numpy_helper.from_array(value, name).SerializeToString())


# -- reading and writing

def test_write_then_read_gives_back_the_arrays(written):
    folder, feeds, outputs = written
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "test_data_set_0"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folder left
    assert folder.stat().st_mode & 0o077  # not mkdtemp's private 0700
    # as ONNX reads them: input_K is the K-th graph input, named after it
    tensor = onnx.load_tensor(str(folder / "test_data_set_0" / "input_1.pb"))
    assert tensor.name == "initial_h"
    [(got_in, got_out)] = read_test_data(folder)
    assert list(got_in) == ["X", "initial_h"] and list(got_out) == ["Y_h"]
    for mine, theirs in ((got_in, feeds), (got_out, outputs)):
        for name, value in theirs.items():
            np.testing.assert_array_equal(mine[name], value)


def test_unnamed_tensors_follow_graph_order(written):
    folder, feeds, _ = written
    data = folder / "test_data_set_0"
    put(data / "input_0.pb", feeds["X"], "")
    put(data / "input_1.pb", feeds["initial_h"], "")
    [(got, _)] = read_test_data(folder)
    np.testing.assert_array_equal(got["X"], feeds["X"])
    np.testing.assert_array_equal(got["initial_h"], feeds["initial_h"])


def test_data_sets_are_read_in_numeric_order(written):
    folder, _, _ = written
    for n, seed in ((10, 10), (2, 2)):
        feeds, outputs = arrays(seed)
        data = folder / f"test_data_set_{n}"
        data.mkdir()
        put(data / "input_0.pb", feeds["X"], "X")
        put(data / "input_1.pb", feeds["initial_h"], "initial_h")
        put(data / "output_0.pb", outputs["Y_h"], "Y_h")
    sets = read_data_sets(folder)
    assert [d.path.name for d in sets] == ["test_data_set_0", "test_data_set_2", "test_data_set_10"]
    np.testing.assert_array_equal(sets[2].inputs["X"], arrays(10)[0]["X"])


def test_a_lone_data_set_with_its_model(written):
    folder, feeds, _ = written
    [data] = read_data_sets(folder / "test_data_set_0", folder / "model.onnx")
    np.testing.assert_array_equal(data.inputs["X"], feeds["X"])


def test_an_input_an_initializer_backs_is_optional(written, tmp_path):
    folder, feeds, _ = written
    model = onnx.load(str(folder / "model.onnx"))
    w = next(t for t in model.graph.initializer if t.name == "W")
    model.graph.input.insert(0, helper.make_tensor_value_info("W", TensorProto.FLOAT, list(w.dims)))  # old IR
    onnx.save(model, folder / "model.onnx")
    [(got, _)] = read_test_data(folder)  # W not given: its initializer stands
    assert list(got) == ["X", "initial_h"]
    put(folder / "test_data_set_0" / "input_2.pb", numpy_helper.to_array(w), "W")
    [(got, _)] = read_test_data(folder)  # W given as its initializer: not a feed
    assert list(got) == ["X", "initial_h"]
    put(folder / "test_data_set_0" / "input_2.pb", numpy_helper.to_array(w) + 1, "W")
    with pytest.raises(ValueError, match="gives input 'W' a value other than its initializer's"):
        read_test_data(folder)


def _rename(a, b):
    return lambda f: (f / "test_data_set_0" / a).rename(f / "test_data_set_0" / b)


BAD_FOLDERS = [
    ("no model", lambda f: (f / "model.onnx").unlink(), "has no model.onnx"),
    ("empty", lambda f: [shutil.rmtree(f), f.mkdir()], "holds no test_data_set_N"),
    ("gap", _rename("input_1.pb", "input_2.pb"), "no input_1.pb"),
    ("one too many", lambda f: shutil.copy(f / "test_data_set_0/input_1.pb", f / "test_data_set_0/input_2.pb"),
     "holds 3 input_K.pb; the model has 2 inputs"),
    ("foreign name", lambda f: put(f / "test_data_set_0/input_0.pb", np.zeros((5, 2, I), np.float32), "Z"),
     "is tensor 'Z'; the model's inputs are ['X', 'initial_h']"),
    ("twice", lambda f: put(f / "test_data_set_0/input_1.pb", np.zeros((5, 2, I), np.float32), "X"),
     "two input_K.pb hold input 'X'"),
    ("no output", lambda f: (f / "test_data_set_0/output_0.pb").unlink(), "has no output 'Y_h'"),
    ("not a tensor", lambda f: (f / "test_data_set_0/input_0.pb").write_bytes(b"\xff\xff\xff\xff"),
     "is not a serialized onnx.TensorProto"),
    ("float64", lambda f: put(f / "test_data_set_0/input_0.pb", np.zeros((5, 2, I)), "X"),
     "input 'X' is float64; the model takes float32"),
    ("shape", lambda f: put(f / "test_data_set_0/input_0.pb", np.zeros((5, 2, I + 1), np.float32), "X"),
     "input 'X' has shape [5, 2, 3]"),
    ("batch disagrees", lambda f: put(f / "test_data_set_0/output_0.pb", np.zeros((1, 3, H), np.float32), "Y_h"),
     "dim 'batch' is 3 in 'Y_h' but 2"),
]


@pytest.mark.parametrize("spoil, message", [b[1:] for b in BAD_FOLDERS], ids=[b[0] for b in BAD_FOLDERS])
def test_a_bad_folder_is_one_line_saying_what(written, spoil, message):
    folder, _, _ = written
    spoil(folder)
    with pytest.raises(ValueError) as err:
        read_checked(folder)  # names and counts: read_test_data; dtypes and shapes: verify's checks
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("where, message", [
    (lambda f: f / "test_data_set_0", "is one data set: name its MODEL too"),
    (lambda f: f / "model.onnx", "is a file"),
    (lambda f: f / "nowhere", "test data folder not found"),
])
def test_a_bad_path_is_one_line(written, where, message):
    with pytest.raises(ValueError, match=message):
        read_test_data(where(written[0]))


def test_write_replaces_its_own_folder_and_refuses_others(written):
    folder, _, _ = written
    feeds, outputs = arrays(seed=7)
    write_test_data(folder, folder / "model.onnx", feeds, outputs)
    [(got, _)] = read_test_data(folder)
    np.testing.assert_array_equal(got["X"], feeds["X"])
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds notes.txt"):
        write_test_data(folder, folder / "model.onnx", feeds, outputs)
    assert (folder / "notes.txt").read_text() == "mine"


# -- verify on saved test data (one of our models)

@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    from lstm_onnx.bench.models import export_form, random_checkpoint

    return export_form(random_checkpoint(4, 8, seed=2), "native", tmp_path_factory.mktemp("ours") / "m.onnx")


def cli(*args):
    from lstm_onnx.cli.main import cli as main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_save_test_data_then_verify_it_and_a_changed_output_fails(ours, tmp_path):
    saved = cli("verify", ours, "--runner", "onnx-reference", "--save-test-data", tmp_path / "td")
    assert saved.exit_code == 0, saved.output
    again = cli("verify", "--test-data", tmp_path / "td", "--runner", "onnxruntime-cpu", "--runner", "onnx-reference")
    assert again.exit_code == 0, again.output
    assert f"parity against {TEST_DATA} td" in again.output and "test_data_set_0/y" in again.output
    out = tmp_path / "td" / "test_data_set_0" / "output_0.pb"
    y = numpy_helper.to_array(onnx.load_tensor(str(out))).copy()
    y.flat[0] += 1e-3
    put(out, y, "y")
    bad = cli("verify", "--test-data", tmp_path / "td", "--runner", "onnxruntime-cpu")
    assert bad.exit_code == 1 and "FAILED" in bad.output, bad.output
    assert "onnxruntime-cpu test_data_set_0/y: max abs 0.001" in bad.output


def test_every_data_set_is_verified(ours, tmp_path):
    verify_model(ours, options=VerifyOptions(runners=("onnxruntime-cpu",), save_test_data=tmp_path / "td"))
    shutil.copytree(tmp_path / "td" / "test_data_set_0", tmp_path / "td" / "test_data_set_1")
    out = tmp_path / "td" / "test_data_set_1" / "output_0.pb"
    put(out, numpy_helper.to_array(onnx.load_tensor(str(out))) + np.float32(0.01), "y")
    report = verify_test_data(ours, None, VerifyOptions(runners=("onnxruntime-cpu",)), tmp_path / "td")
    assert [(r.output, r.passed) for r in report.rows] == [("test_data_set_0/y", True), ("test_data_set_1/y", False)]
    assert report.status == FAILED


@pytest.mark.parametrize("args, message", [
    (["--expected", "x.npz"], "--test-data gives the feeds and the expected outputs: drop --expected"),
    (["--baseline", "onnx-reference", "--save-test-data", "d"], "drop --baseline, --save-test-data"),
])
def test_test_data_with_what_it_replaces_is_one_line(ours, tmp_path, args, message):
    verify_model(ours, options=VerifyOptions(runners=("onnxruntime-cpu",), save_test_data=tmp_path / "td"))
    result = cli("verify", "--test-data", tmp_path / "td", *args)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_a_data_set_folder_without_model_is_one_line(ours, tmp_path):
    verify_model(ours, options=VerifyOptions(runners=("onnxruntime-cpu",), save_test_data=tmp_path / "td"))
    result = cli("verify", "--test-data", tmp_path / "td" / "test_data_set_0")
    assert result.exit_code != 0 and "name its MODEL too" in result.output
    result = cli("verify", ours, "--test-data", tmp_path / "td" / "test_data_set_0", "--runner", "onnx-reference")
    assert result.exit_code == 0, result.output


# -- ONNX's own LSTM node tests

RUNNERS = ("onnxruntime-cpu", "onnx-reference", "numpy")
# What each folder must give, per runner: PASS, or refused with the reason's key words. Folders not listed
# (a later onnx's) must give what the capability table and the reference runner's refusals predict.
EXPECTED = {
    "test_lstm_defaults": {"onnxruntime-cpu": "PASS", "onnx-reference": "PASS"},
    "test_lstm_with_initial_bias": {"onnxruntime-cpu": "PASS", "onnx-reference": "PASS"},
    "test_lstm_with_peepholes": {"onnxruntime-cpu": "PASS",  # its LSTM applies sequence_lens in later onnx
                                 "onnx-reference": "PASS" if sequence_lens_honoured() else "refused: sequence_lens"},
    "test_lstm_batchwise": {"onnxruntime-cpu": "refused: layout=1", "onnx-reference": "PASS"},
}


def predicted(model) -> dict[str, str]:
    """The outcome the capability table (ORT) and onnx-reference's refusal list foretell."""
    ort = shortfalls("onnxruntime-cpu", model_features(model))
    return {"onnxruntime-cpu": "refused: layout=1" if ort.get("layout_1") == REFUSED else "PASS",
            "onnx-reference": "refused: sequence_lens" if unsupported_features(model) else "PASS"}


def outcome(report, runner: str) -> str:
    rows = [r for r in report.rows if r.runner == runner]
    if rows:
        return "PASS" if all(r.passed and not r.known_wrong for r in rows) else "FAIL"
    why = report.skipped.get(runner) or f"ERROR: {report.errors.get(runner)}"
    return f"refused: {why}" if why.startswith("refused") else why


@pytest.fixture(scope="module")
def lstm_tests(tmp_path_factory):
    pytest.importorskip("onnx.backend.test.case.node", reason="this onnx has no backend test cases")
    return onnx_lstm_tests(tmp_path_factory.mktemp("onnx-node"))


@pytest.mark.slow
def test_onnx_lstm_node_tests(lstm_tests):
    names = [f.name for f in lstm_tests]
    assert set(EXPECTED) <= set(names), names
    for folder in lstm_tests:
        model = onnx.load(str(folder / "model.onnx"))
        report = verify_test_data(folder / "model.onnx", None, VerifyOptions(runners=RUNNERS), folder)
        want = EXPECTED.get(folder.name, predicted(model))
        assert want == predicted(model), folder.name  # the table and the list above agree
        assert report.status == PASSED, report.to_table()
        assert "needs a checkpoint" in report.skipped["numpy"]  # numpy reads a checkpoint, not an ONNX LSTM
        for runner, expect in want.items():
            got = outcome(report, runner)
            if expect == "PASS":
                assert got == "PASS", (folder.name, runner, report.to_table())
                assert {r.output for r in report.rows if r.runner == runner} == \
                    {f"test_data_set_0/{o.name}" for o in model.graph.output}
            else:
                reason = expect.split(": ", 1)[1]
                assert got.startswith("refused") and reason in got, (folder.name, runner, got)


@pytest.mark.slow
def test_a_changed_onnx_expected_output_fails(lstm_tests, tmp_path):
    folder = shutil.copytree(next(f for f in lstm_tests if f.name == "test_lstm_defaults"), tmp_path / "defaults")
    out = folder / "test_data_set_0" / "output_0.pb"
    tensor = onnx.load_tensor(str(out))
    y = numpy_helper.to_array(tensor).copy()
    y.flat[-1] += 1e-3
    put(out, y, tensor.name)
    report = verify_test_data(folder / "model.onnx", None, VerifyOptions(runners=RUNNERS[:2]), folder)
    assert report.status == FAILED
    assert [(r.runner, r.passed) for r in report.rows] == [("onnxruntime-cpu", False), ("onnx-reference", False)]
    assert all(r.max_abs == pytest.approx(1e-3, rel=1e-3) for r in report.rows)
