"""The embedding API imports and runs with torch, click and the web stack blocked."""
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests import models

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("torch", "click", "fastapi", "uvicorn", "starlette", "pydantic", "onnx",
           "lstm_onnx.exporters", "lstm_onnx.pipeline", "lstm_onnx.cli", "lstm_onnx.bench")

SCRIPT = """
import sys, importlib.abc
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"{{name}} is blocked in this test")
sys.meta_path.insert(0, Block())
import numpy as np
from lstm_onnx.runtimes.embed import Predictor
p = Predictor.load({model!r}, provider="cpu")
x = np.load({x!r})
y = p.predict(x)
s = p.stream()
for t in range(x.shape[1]):
    y_t = s.step(x[:1, t])
np.save({out!r}, np.concatenate([y, y_t]))
leaked = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
assert not leaked, leaked
"""


def test_embed_runs_without_torch(tmp_path):
    ckpt = models.checkpoint()
    model = models.export(ckpt, tmp_path / "m.onnx", stateful=True, lengths=True)
    x = np.stack(models.raw_inputs(np.random.default_rng(0), [5, 5]))
    np.save(tmp_path / "x.npy", x)
    script = SCRIPT.format(blocked=BLOCKED, model=str(model), x=str(tmp_path / "x.npy"), out=str(tmp_path / "y.npy"))
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    y = np.load(tmp_path / "y.npy")
    ref = models.torch_reference(ckpt, x)
    np.testing.assert_allclose(y, np.concatenate([ref, ref[:1]]), atol=1e-5, rtol=1e-5)


def test_the_blocker_really_blocks(tmp_path):
    """The mutation: code that imports torch must fail under the same blocker."""
    script = SCRIPT.split("import numpy as np")[0].format(blocked=BLOCKED) + "import torch\n"
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "blocked in this test" in r.stderr
