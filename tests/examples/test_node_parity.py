"""examples/node (onnxruntime-node) streams the same model to the same outputs as runtimes.embed."""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lstm_onnx.runtimes.embed import Predictor
from lstm_onnx.runtimes.tolerances import default_tolerance
from tests import models

NODE_DIR = Path(__file__).resolve().parents[2] / "examples" / "node"
CHUNKS = (1, 3, 1, 5, 2)


@pytest.fixture(scope="module")
def node():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node/npm not on PATH: the Node.js parity test needs Node >= 18 and npm")
    if not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir():
        # No scripts: the package ships its CPU binary; its postinstall would fetch CUDA binaries from elsewhere.
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                           cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    return node


@pytest.mark.parametrize("head, lengths", [("last", True), ("sequence", False)])
def test_node_stream_equals_python_stream(node, tmp_path, head, lengths):
    model = models.export(models.checkpoint(head=head), tmp_path / "m.onnx", stateful=True, lengths=lengths)
    x = models.raw_inputs(np.random.default_rng(0), [sum(CHUNKS)])[0]
    bounds = np.cumsum((0,) + CHUNKS)
    chunks = [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    (tmp_path / "in.json").write_text(json.dumps({"chunks": [c.tolist() for c in chunks]}))
    r = subprocess.run([node, str(NODE_DIR / "stream.js"), str(model), str(tmp_path / "in.json")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    node_out = json.loads(r.stdout)["outputs"]
    stepper = Predictor.load(model).stream()
    tol = default_tolerance("float32")
    assert len(node_out) == len(chunks)
    for c, y_node in zip(chunks, node_out):
        y_py = stepper.step(c[None])[0]
        np.testing.assert_allclose(np.asarray(y_node, np.float32), y_py, atol=tol.atol, rtol=tol.rtol)


def test_node_reports_bad_input(node, tmp_path):
    model = models.export(models.checkpoint(), tmp_path / "m.onnx", stateful=True)
    (tmp_path / "in.json").write_text(json.dumps({"chunks": [[[1.0, 2.0]]]}))
    r = subprocess.run([node, str(NODE_DIR / "stream.js"), str(model), str(tmp_path / "in.json")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "expected 3" in r.stderr
