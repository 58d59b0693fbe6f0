"""make bench-ddp: two ranks under torchrun (not mp.spawn), the machine in its JSON, nothing foreign on stderr."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_ddp_runs_its_ranks_under_torchrun(tmp_path):
    out = tmp_path / "ddp.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_ddp", "--sizes", "4,6,3,8", "--steps", "2",
                           "--warmup", "1", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "terminate called" not in proc.stderr and "Traceback" not in proc.stderr
    doc = json.loads(out.read_text())
    assert doc["machine"]["cores"]["usable"] >= 1
    (row,) = doc["rows"]
    assert (row["B"], row["S"], row["I"], row["H"]) == (4, 6, 3, 8)
    # the parameter count the ranks reduced: LSTM 4H(I+H) + 8H + 3H (P), head H + 1
    assert row["params"] == 4 * 8 * (3 + 8) + 8 * 8 + 3 * 8 + 8 + 1
    assert row["step_ms_2x1"] > 0 and row["allreduce_ms"] > 0
    assert proc.stdout.startswith("machine: ")
