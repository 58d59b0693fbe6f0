"""The Triton repository for the ONNX Runtime backend: config.pbtxt against Triton's own schema (tritonclient's
model_config_pb2), model.onnx against PyTorch, implicit state through our driver, and the CLI."""
import sys
import types

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from lstm_onnx.exporters.export import ExportOptions, export_checkpoint
from lstm_onnx.runtimes.tolerances import default_tolerance
from lstm_onnx.serving.triton_options import INT32_MAX, UINT32_MAX, UINT64_MAX, TritonOptions
from lstm_onnx.serving.triton_repo import ImplicitStateDriver, RepositoryError, atomic_repository, write_onnx_repository
from tests import models
from tests.helpers import make_checkpoint

TOL = default_tolerance("float32")
L = 2  # layers of the stateful model: with L*D = 2, a batch of 2 is where a missing Transpose still runs


def _pb():
    return pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="Triton's schema comes with "
                               "tritonclient (pip install 'lstm-onnx-pipeline[triton]')")


def _parse(text: str):
    from google.protobuf import text_format

    return text_format.Parse(text, _pb().ModelConfig())


def _checkpoint(head: str, num_layers: int = 1, seed: int = 0):
    """models.checkpoint, with a layer count: random weights, normalization far from 0/1."""
    ckpt = make_checkpoint(seed, input_size=models.F, hidden_size=models.H, output_size=models.O, head=head,
                           num_layers=num_layers)
    ckpt.normalization = models.checkpoint(head=head, seed=seed).normalization
    return ckpt


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    made = {}
    for key, head, layers, opts in (("stateless", "last", 1, {}),
                                    ("stateful", "sequence", L, dict(stateful=True)),
                                    ("lengths", "last", 1, dict(stateful=True, lengths=True)),
                                    ("gpu-ready", "last", 1, dict(form="auto", target="ort-cuda"))):
        ckpt = _checkpoint(head, layers)
        export_checkpoint(ckpt, folder / f"{key}.onnx", ExportOptions(**opts))
        made[key] = (folder / f"{key}.onnx", ckpt)
    return made


def _dims(shape) -> list[int]:
    """An onnxruntime input shape without its batch axis, as config.pbtxt writes it."""
    return [d if isinstance(d, int) else -1 for d in shape[1:]]


OPTION_SETS = [TritonOptions(),
               TritonOptions(name="lstm-b", max_batch_size=16, preferred_batch_sizes=(4, 8), max_queue_delay_us=500,
                             max_queue_size=77, instance_count=3, max_candidate_sequences=9,
                             max_sequence_idle_us=1234)]  # KIND_GPU: test_gpu_instances


@pytest.mark.parametrize("options", OPTION_SETS, ids=["defaults", "all-set"])
@pytest.mark.parametrize("key", ["stateless", "stateful", "lengths"])
def test_config_parses_and_says_what_the_options_and_model_say(exports, tmp_path, key, options):
    path, ckpt = exports[key]
    written = write_onnx_repository(path, tmp_path / "repo", options)
    cfg = _parse(written[0].read_text())
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == (options.name, "onnxruntime_onnx", options.max_batch_size)
    session = ort.InferenceSession(str(written[1]), providers=["CPUExecutionProvider"])
    model_in = {i.name: i for i in session.get_inputs()}
    model_out = {o.name: o for o in session.get_outputs()}
    # The ONNX Runtime backend's rule: the model's inputs are exactly the config's inputs, states and controls.
    stateful = key != "stateless"
    states = {s.input_name for s in cfg.sequence_batching.state}
    controls = {c.name for c in cfg.sequence_batching.control_input}
    assert states == ({"h0", "c0"} if stateful else set()) and controls == ({"START", "READY"} if stateful else set())
    assert not ({i.name for i in cfg.input} & (states | controls))  # each counted once by the backend
    assert set(model_in) == {i.name for i in cfg.input} | states | controls
    assert set(model_out) == {o.name for o in cfg.output} | ({"hn", "cn"} if stateful else set())
    x = next(i for i in cfg.input if i.name == "x")
    assert list(x.dims) == [-1, models.F] == _dims(model_in["x"].shape)
    y = cfg.output[0]
    want_y = [-1, models.O] if ckpt.model_config.head == "sequence" else [models.O]
    assert (y.name, list(y.dims)) == ("y", want_y) and list(y.dims) == _dims(model_out["y"].shape)
    assert x.data_type == y.data_type == _pb().TYPE_FP32
    group = cfg.instance_group[0]
    assert (group.kind, group.count, list(group.gpus)) == (_pb().ModelInstanceGroup.KIND_CPU,
                                                           options.instance_count, [])
    if not stateful:
        assert not cfg.HasField("sequence_batching")
        batching = cfg.dynamic_batching
        assert list(batching.preferred_batch_size) == list(options.preferred_batch_sizes)
        assert batching.max_queue_delay_microseconds == options.max_queue_delay_us
        assert batching.default_queue_policy.max_queue_size == options.max_queue_size
        return
    assert not cfg.HasField("dynamic_batching")
    seq = cfg.sequence_batching
    assert seq.max_sequence_idle_microseconds == options.max_sequence_idle_us
    assert seq.oldest.max_candidate_sequences == options.max_candidate_sequences
    assert list(seq.oldest.preferred_batch_size) == list(options.preferred_batch_sizes)
    assert seq.oldest.max_queue_delay_microseconds == options.max_queue_delay_us
    pb_control = _pb().ModelSequenceBatching.Control
    kinds = {c.name: [(k.kind, list(k.int32_false_true), list(k.fp32_false_true), list(k.bool_false_true))
                      for k in c.control] for c in seq.control_input}
    assert kinds == {"START": [(pb_control.CONTROL_SEQUENCE_START, [0, 1], [], [])],
                     "READY": [(pb_control.CONTROL_SEQUENCE_READY, [0, 1], [], [])]}
    for name in controls:  # the backend's ValidateBooleanSequenceControl: dims [1], int32_false_true's type
        assert _dims(model_in[name].shape) == [1] and model_in[name].type == "tensor(int32)"
    layers = ckpt.model_config.num_layers
    assert [(s.input_name, s.output_name) for s in seq.state] == [("h0", "hn"), ("c0", "cn")]
    for s in seq.state:
        assert list(s.dims) == [layers, models.H] == _dims(model_in[s.input_name].shape) \
            == _dims(model_out[s.output_name].shape)
        [initial] = s.initial_state  # repeated in the schema; one per state
        assert initial.zero_data and list(initial.dims) == list(s.dims)
        assert s.data_type == initial.data_type == _pb().TYPE_FP32
    if key == "lengths":
        lengths = next(i for i in cfg.input if i.name == "lengths")
        assert (lengths.data_type, list(lengths.dims)) == (_pb().TYPE_INT32, [1])
        assert lengths.HasField("reshape") and list(lengths.reshape.shape) == []
        assert model_in["lengths"].shape == ["batch"]  # [batch] in the model: the reshape drops Triton's [1]


def test_gpu_instances(exports, tmp_path):
    """KIND_GPU with the devices asked; refused for a native LSTM with P, which ORT's CUDA EP runs on the CPU."""
    gpu = TritonOptions(instance_kind="gpu", instance_count=2, gpus=(1, 3))
    with pytest.raises(RepositoryError, match="--form auto --target ort-cuda"):
        write_onnx_repository(exports["stateless"][0], tmp_path / "refused", gpu)
    assert not (tmp_path / "refused").exists()
    written = write_onnx_repository(exports["gpu-ready"][0], tmp_path / "repo", gpu)
    group = _parse(written[0].read_text()).instance_group[0]
    assert (group.kind, group.count, list(group.gpus)) == (_pb().ModelInstanceGroup.KIND_GPU, 2, [1, 3])
    every = write_onnx_repository(exports["gpu-ready"][0], tmp_path / "all", TritonOptions(instance_kind="gpu"))
    cfg = _parse(every[0].read_text())
    assert list(cfg.instance_group[0].gpus) == []  # every GPU


@pytest.mark.parametrize("key", ["stateless", "lengths"])
def test_model_is_raw_in_raw_out_and_equals_torch(exports, tmp_path, key):
    path, ckpt = exports[key]
    written = write_onnx_repository(path, tmp_path / "repo", TritonOptions())
    session = ort.InferenceSession(str(written[1]), providers=["CPUExecutionProvider"])
    x = np.stack(models.raw_inputs(np.random.default_rng(1), [6, 6, 6]))
    feeds = {"x": x}
    if key == "lengths":  # START=1: zero state, whatever state comes in
        feeds.update(lengths=np.array([6, 6, 6], np.int32), h0=np.ones((3, 1, models.H), np.float32),
                     c0=np.ones((3, 1, models.H), np.float32), START=np.ones((3, 1), np.int32),
                     READY=np.ones((3, 1), np.int32))
    y = session.run(["y"], feeds)[0]
    np.testing.assert_allclose(y, models.torch_reference(ckpt, x), atol=TOL.atol, rtol=TOL.rtol)


# -- implicit state: three sequences, chunked differently, interleaved into the batches `oldest` could form
SEQS = {"a": 7, "b": 5, 7: 9}  # correlation ids (Triton takes ints and strings) -> steps
ROUNDS = [[("a", 0, 2), ("b", 0, 2), (7, 0, 2)],  # (id, from, to): every sequence starts, batch 3
          [(7, 2, 4)],
          [("a", 2, 4), (7, 4, 6)],  # batch 2 = L*D: the layout a dropped Transpose would silently misread
          [("b", 2, 5), ("a", 4, 7)],
          [(7, 6, 9)]]
IDLE = {1: ("a", "b")}  # round -> sequences in progress holding a slot without a request (READY=0)


def drive(model_path, xs: dict, stale_start: bool = False) -> dict:
    """Each sequence's y over its chunks, through ImplicitStateDriver, in ROUNDS' order. An idle slot's state
    must come back bit for bit."""
    driver = ImplicitStateDriver(model_path, stale_start=stale_start)
    ys = {cid: [] for cid in xs}
    for number, round_ in enumerate(ROUNDS):
        idle = IDLE.get(number, ())
        before = {cid: dict(driver.state[cid]) for cid in idle}
        requests = [(cid, lo == 0, {"x": xs[cid][None, lo:hi]}) for cid, lo, hi in round_]
        for (cid, _, _), out in zip(requests, driver.run_round(requests, idle)):
            ys[cid].append(out["y"][0])
        for cid in idle:
            for name, value in before[cid].items():
                np.testing.assert_array_equal(driver.state[cid][name], value, err_msg=f"idle {cid!r}'s {name}")
    return {cid: np.concatenate(parts) for cid, parts in ys.items()}, driver


@pytest.mark.parametrize("stale_start", [False, True], ids=["zero-start", "stale-start"])
def test_implicit_state_chunks_equal_one_pass(exports, tmp_path, stale_start):
    """stale-start: each sequence starts with a non-zero state handed in (ones, or its id's last state), which
    the model's START must replace by zeros."""
    path, ckpt = exports["stateful"]
    written = write_onnx_repository(path, tmp_path / "repo", TritonOptions())
    rng = np.random.default_rng(2)
    xs = {cid: x for cid, x in zip(SEQS, models.raw_inputs(rng, list(SEQS.values())))}
    ys, driver = drive(written[1], xs, stale_start)
    for cid, x in xs.items():
        whole = models.torch_reference(ckpt, x[None])[0]  # one pass over the whole sequence, from zero state
        np.testing.assert_allclose(ys[cid], whole, atol=TOL.atol, rtol=TOL.rtol, err_msg=f"sequence {cid!r}")
    # A new sequence on a used id starts from zeros again, not from the kept state.
    again = driver.run_round([("b", True, {"x": xs["b"][None, :2]})])[0]["y"][0]
    np.testing.assert_allclose(again, models.torch_reference(ckpt, xs["b"][None, :2])[0], atol=TOL.atol,
                               rtol=TOL.rtol)


BROKEN = {"layout": ("_batch_first_output", lambda graph, name: None, "rewritten model"),  # may not even run
          "START ignored": ("_start_gate", lambda graph, h_in: [], "rewritten model's .* with START/READY set"),
          "READY ignored": ("_ready_gate", lambda graph, h_in, h_out: None,
                            "rewritten model's [hc]n .* with START/READY set")}


@pytest.mark.parametrize("broken", BROKEN)
def test_a_broken_rewrite_is_refused(exports, tmp_path, monkeypatch, broken):
    """The generator runs the rewritten model against the original: a layout bug, or a graph that ignores a
    sequence control, cannot reach a repository."""
    from lstm_onnx.serving import triton_graph

    function, mutant, message = BROKEN[broken]
    monkeypatch.setattr(triton_graph, function, mutant)
    with pytest.raises(RepositoryError, match=message):
        write_onnx_repository(exports["stateful"][0], tmp_path / "repo", TritonOptions())
    assert not (tmp_path / "repo").exists()


# config.pbtxt's field widths (ModelConfig: int32, uint32, uint64) -> the stateless and stateful configs holding it
WIDEST = {"max_batch_size": (INT32_MAX, ("stateless", "stateful")),
          "instance_count": (INT32_MAX, ("stateless",)),
          "max_queue_size": (UINT32_MAX, ("stateless",)),
          "max_queue_delay_us": (UINT64_MAX, ("stateless", "stateful")),
          "max_candidate_sequences": (INT32_MAX, ("stateful",)),
          "max_sequence_idle_us": (UINT64_MAX, ("stateful",))}


@pytest.mark.parametrize("backend", ["onnxruntime", "python"])
@pytest.mark.parametrize("field", WIDEST)
def test_option_limits_are_the_schemas(exports, field, backend):
    """Triton's schema takes the widest value problems() allows, and refuses one more, which problems() refuses."""
    from google.protobuf import text_format

    from lstm_onnx.serving import triton_python_repo
    from lstm_onnx.serving.triton_config import config_text
    from lstm_onnx.serving.triton_graph import triton_model

    widest, keys = WIDEST[field]
    at, over = TritonOptions(**{field: widest}), TritonOptions(**{field: widest + 1})
    assert at.problems() == []
    assert any(f"<= {widest}" in line for line in over.problems()), over.problems()
    for key in keys:
        path = exports[key][0]
        if backend == "python":
            io = triton_python_repo.model_io(path)
            texts = [triton_python_repo.config_text(o, io, io["stateful"]) for o in (at, over)]
        else:
            spec = triton_model(path)[1]
            texts = [config_text(o, spec) for o in (at, over)]
        assert _parse(texts[0]).name == "lstm"
        with pytest.raises(text_format.ParseError):
            _parse(texts[1])


def test_static_batch_export_is_refused(tmp_path):
    path = tmp_path / "unrolled.onnx"
    export_checkpoint(models.checkpoint(), path, ExportOptions(form="unrolled", seq_len=4, batch_size=2))
    with pytest.raises(RepositoryError, match="static batch size.*--form native or decomposed"):
        write_onnx_repository(path, tmp_path / "repo", TritonOptions())


def test_failed_build_leaves_the_old_repository_and_no_temp(tmp_path):
    out = tmp_path / "repo"
    (out / "old").mkdir(parents=True)
    (out / "old" / "config.pbtxt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_repository(out, force=True) as staging:
            (staging / "new").mkdir(parents=True)
            raise RuntimeError("disk on fire")
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]
    assert (out / "old" / "config.pbtxt").read_text() == "old" and not (out / "new").exists()


# -- the CLI

def _run(*args):
    return CliRunner().invoke(cli, ["deploy", "triton", *map(str, args)])


def _one_line_error(result, *words):
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for word in words:
        assert word in lines[0], lines[0]


def test_cli_writes_the_repository(exports, tmp_path):
    out = tmp_path / "repo"
    result = _run(exports["stateful"][0], "-o", out, "--name", "m1", "--max-batch-size", 8,
                  "--preferred-batch-size", 2, "--preferred-batch-size", 4, "--instance-count", 2)
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["m1/1/model.onnx",
                                                                                       "m1/config.pbtxt"]
    cfg = _parse((out / "m1" / "config.pbtxt").read_text())
    assert (cfg.name, cfg.max_batch_size, list(cfg.sequence_batching.oldest.preferred_batch_size),
            cfg.instance_group[0].count) == ("m1", 8, [2, 4], 2)
    assert "wrote" in result.output and "tritonserver --model-repository" in result.output
    # Not empty now: refused without --force, replaced with it.
    _one_line_error(_run(exports["stateless"][0], "-o", out, "--name", "m2"), "not empty", "--force")
    assert _run(exports["stateless"][0], "-o", out, "--name", "m2", "--force").exit_code == 0
    assert [p.name for p in out.iterdir()] == ["m2"]


@pytest.mark.parametrize("args,words", [
    (["--max-batch-size", 0], ["max batch size 0"]),
    (["--preferred-batch-size", 100], ["preferred batch sizes [100]", "1..64"]),
    (["--gpu", 0], ["--instance-kind gpu"]),
    (["--instance-count", 0], ["instance count 0"]),
    (["--name", "a/b"], ["model name"]),
    (["--instance-kind", "gpu"], ["--form auto --target ort-cuda"]),
    (["--backend", "tensorflow"], ["tensorflow"]),
    (["--max-queue-delay-us", -1], ["max queue delay (us) -1"]),
    (["--instance-kind", "gpu", "--gpu", -1], ["gpus [-1]"]),
    (["--max-batch-size", 2**31], ["max batch size 2147483648", "<= 2147483647"]),
    (["--max-queue-delay-us", 2**64], ["max queue delay (us)", "<= 18446744073709551615"]),
])
def test_cli_bad_options_are_one_line(exports, tmp_path, args, words):
    _one_line_error(_run(exports["stateless"][0], "-o", tmp_path / "repo", *args), *words)
    assert not (tmp_path / "repo").exists()


def test_cli_bad_model_and_folders_are_one_line(exports, tmp_path):
    _one_line_error(_run(tmp_path / "missing.onnx", "-o", tmp_path / "r"), "model not found")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    _one_line_error(_run(tmp_path / "junk.onnx", "-o", tmp_path / "r"), "not a readable ONNX model")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    _one_line_error(_run(exports["stateless"][0], "-o", tmp_path / "mine", "--force"), "only a model repository")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_cli_python_backend_dispatches(exports, tmp_path, monkeypatch):
    """--backend python hands the model, a fresh build folder and the options to triton_python_repo."""
    calls = []

    def write_python_repository(model_path, out, options):
        calls.append((model_path, options))
        (out / options.name).mkdir(parents=True)
        (out / options.name / "config.pbtxt").write_text('backend: "python"')

    fake = types.ModuleType("lstm_onnx.serving.triton_python_repo")
    fake.write_python_repository = write_python_repository
    monkeypatch.setitem(sys.modules, "lstm_onnx.serving.triton_python_repo", fake)
    out = tmp_path / "repo"
    result = _run(exports["stateless"][0], "-o", out, "--backend", "python", "--max-batch-size", 4)
    assert result.exit_code == 0, result.output
    assert calls == [(str(exports["stateless"][0]), TritonOptions(backend="python", max_batch_size=4))]
    assert (out / "lstm" / "config.pbtxt").read_text() == 'backend: "python"'
    assert f"wrote {out / 'lstm' / 'config.pbtxt'}" in result.output


@pytest.mark.parametrize("backend", ["onnxruntime", "python"])
def test_a_model_that_is_not_an_export_is_refused(tmp_path, backend):
    """A foreign model with tensors named x and y (no LSTM, no metadata) got a repository."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "S", 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "foreign", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "foreign.onnx")
    _one_line_error(_run(tmp_path / "foreign.onnx", "-o", tmp_path / "r", "--backend", backend),
                    "not a model that `lstm-pipeline export` wrote")
    assert not (tmp_path / "r").exists()
