"""examples/web in headless Chromium (Debian's chromium, driven by playwright-core): the page streams an export
through onnxruntime-web (WASM) to Predictor's outputs, and each onnxruntime-web cell of the capability table is
what the page measures. Skips where node, chromium or examples/web/node_modules is missing (make test-web)."""
import json
import shutil
import subprocess

import numpy as np
import onnx
import pytest

from benchmarks import web_page
from lstm_onnx.core import metadata
from lstm_onnx.exporters.export import ExportOptions, export_checkpoint
from lstm_onnx.runtimes.capabilities import REFUSED, RUNTIMES, WRONG, YES
from lstm_onnx.runtimes.compare import Tolerances, compare_outputs
from lstm_onnx.runtimes.embed import Predictor
from lstm_onnx.runtimes.numpy_ref import NumpyRunner
from lstm_onnx.runtimes.tolerances import default_tolerance
from lstm_onnx.runtimes.verify import model_feeds
from tests import models
from tests.helpers import make_checkpoint
from tests.runtimes.test_verify_cases import layout_0_copy, layout_1_lstm

CHUNKS = (1, 3, 1, 5, 2, 1, 4)
ATOL = 1e-5  # the bar: the page equals Predictor to 1e-5 (float32 kernels on both sides)
ROW = RUNTIMES["onnxruntime-web"]


@pytest.fixture(scope="module")
def browser():
    why = web_page.missing()
    if why:
        pytest.skip(f"{why}: the browser tests need node, chromium and `make web-deps`")


def chunked(n_steps: int, seed: int = 0) -> list[np.ndarray]:
    x = models.raw_inputs(np.random.default_rng(seed), [n_steps])[0]
    bounds = np.cumsum((0,) + CHUNKS)
    return [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def stream_in_page(tmp_path, model, chunks, **params) -> dict:
    (tmp_path / "series.json").write_text(json.dumps({"chunks": [c.tolist() for c in chunks]}))
    with web_page.serve(tmp_path) as base:
        return web_page.drive(web_page.page_url(base, model=f"/data/{model.name}", series="/data/series.json",
                                                **params))


@pytest.mark.parametrize("head", ["last", "sequence"])
def test_page_streams_a_stateful_lengths_export_like_predictor(browser, tmp_path, head):
    model = models.export(models.checkpoint(head=head), tmp_path / "m.onnx", stateful=True, lengths=True)
    chunks = chunked(sum(CHUNKS))
    result = stream_in_page(tmp_path, model, chunks)
    assert "error" not in result, result
    assert result["ep"] == "wasm" and len(result["outputs"]) == len(chunks)
    pred = Predictor.load(model)
    stepper = pred.stream()
    for c, y_page in zip(chunks, result["outputs"]):
        np.testing.assert_allclose(np.asarray(y_page, np.float32), stepper.step(c[None])[0], atol=ATOL, rtol=0)
    # The mutations the comparison must catch: state dropped between chunks, normalization skipped.
    fresh = [pred.stream().step(c[None])[0] for c in chunks[1:]]
    assert not np.allclose(np.concatenate([np.ravel(y) for y in result["outputs"][1:]]),
                           np.concatenate([np.ravel(y) for y in fresh]), atol=ATOL, rtol=0)
    unnormalized = pred.predict(chunks[0][None], normalize=False)[0]
    assert not np.allclose(np.asarray(result["outputs"][0], np.float32), unnormalized, atol=ATOL, rtol=0)


def test_page_refuses_an_export_without_state(browser, tmp_path):
    model = models.export(models.checkpoint(), tmp_path / "m.onnx")
    result = stream_in_page(tmp_path, model, chunked(sum(CHUNKS)))
    assert "--stateful" in result["error"] and "\n" not in result["error"]


def test_the_contract_module_decodes_the_schemas_json_keys():
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not on PATH")
    r = subprocess.run([node, "-e", "console.log(JSON.stringify(require('./examples/common/lstm_contract.js')"
                        ".JSON_KEYS))"], capture_output=True, text=True, timeout=60, cwd=web_page.EXAMPLES.parent)
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(r.stdout)) == sorted(metadata.JSON_KEYS)


# Each model needs exactly its one feature of the table (as tests/runtimes/test_opencv.py measures OpenCV's).
CELL_MODELS = {
    "peepholes": (True, dict(form="native", stateful=True)),
    "sequence_lens": (False, dict(form="native", lengths=True, stateful=True)),
    "scan": (False, dict(form="decomposed", stateful=True)),
    "float16": (False, dict(form="unrolled", dtype="float16", seq_len=23, batch_size=4)),
    "int8": (False, dict(form="native", quantize="int8")),
}


def test_each_cell_is_what_the_page_measures(browser, tmp_path):
    cases, expected, precisions = [], [], []
    for feature, (peephole, options) in CELL_MODELS.items():
        ckpt = make_checkpoint(peephole=peephole, head="sequence", num_layers=2)
        for name, value in ckpt.state_dict.items():  # x4: a dropped P is unmistakable
            if "peephole" in name:
                value.mul_(4.0)
        path = tmp_path / f"{feature}.onnx"
        export_checkpoint(ckpt, path, ExportOptions(**options))
        feeds = model_feeds(onnx.load(path), 4, 23, seed=1)
        if feature == "sequence_lens":
            assert feeds["lengths"].min() < 23  # padded items, or sequence_lens would not be exercised
        with NumpyRunner(ckpt.state_dict, ckpt.model_config, list(feeds)) as ref:
            expected.append(ref.infer(feeds))
        cases.append((path, feeds))
        precisions.append(options.get("quantize") or options.get("dtype", "float32"))
    layout = tmp_path / "layout1.onnx"
    layout_1_lstm(layout, True)
    layout_feeds = model_feeds(onnx.load(layout), 4, 23, seed=1)
    cases.append((layout, layout_feeds))
    swap = lambda a: np.ascontiguousarray(np.swapaxes(a, 0, 1))  # noqa: E731  batch-major <-> time-major
    import onnxruntime as ort

    y, hn, cn = ort.InferenceSession(layout_0_copy(layout).SerializeToString(), providers=["CPUExecutionProvider"]
                                     ).run(None, {k: swap(v) for k, v in layout_feeds.items()})
    expected.append({"y": np.transpose(y, (2, 0, 1, 3)), "hn": swap(hn), "cn": swap(cn)})
    precisions.append("float32")

    outputs, facts = web_page.run_models(cases, tmp_path)
    assert facts["ep"] == "wasm"
    for feature, got, want, precision in zip([*CELL_MODELS, "layout_1"], outputs, expected, precisions):
        if isinstance(got, str):
            measured = REFUSED
        else:
            rows = compare_outputs("onnxruntime-web", got, want, Tolerances(default_tolerance(precision)), list(got))
            measured = YES if rows and all(r.passed for r in rows) else WRONG
        assert measured == getattr(ROW, feature), (feature, got if isinstance(got, str) else rows)


@pytest.mark.parametrize("options", [dict(lengths=True, stateful=True), dict(dtype="float16")],
                         ids=["P-lengths", "float16"])
def test_auto_for_onnxruntime_web_picks_a_form_the_page_computes_right(browser, tmp_path, options):
    from lstm_onnx.runtimes.capabilities import choose_form

    ckpt = make_checkpoint(head="sequence")
    path = tmp_path / "auto.onnx"
    export_checkpoint(ckpt, path, ExportOptions(form="auto", target="onnxruntime-web", **options))
    dtype = options.get("dtype", "float32")
    form = choose_form("onnxruntime-web", True, options.get("lengths", False), dtype)
    assert metadata.read(path)["form"] == form == ("native" if dtype == "float32" else "decomposed")
    feeds = model_feeds(onnx.load(path), 4, 23, seed=2)
    with NumpyRunner(ckpt.state_dict, ckpt.model_config, list(feeds)) as ref:
        want = ref.infer(feeds)
    (got,), _ = web_page.run_models([(path, feeds)], tmp_path)
    rows = compare_outputs("onnxruntime-web", got, want, Tolerances(default_tolerance(dtype)), list(got))
    assert rows and all(r.passed for r in rows), rows
