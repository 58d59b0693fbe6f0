"""benchmarks/loadtest.py: v2 binary and gRPC rows through serving/loadgen.py, answers checked, next to Predictor's
own throughput (the served/model ratio recomputed here from the JSON's own numbers)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import models

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "loadtest.py"


def run(*args, timeout=120):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_protocol_rows_sit_next_to_the_predictor_baseline(tmp_path):
    model = models.export(models.checkpoint(), tmp_path / "serve.onnx", stateful=True, lengths=True)
    out = tmp_path / "load.json"
    proc = run(model, "--target", "v2-binary", "--target", "grpc", "--target", "grpc-stream", "--modes",
               "batching on", "--clients", 4, "--seconds", 1, "--seq", 20, "--baseline-seconds", 0.3, "--json", out)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    base = doc["baseline"]
    assert (base["batch"], base["steps"], base["threads"]) == (64, 20, 1)
    assert base["start"]["seq_per_s"] > 0 and base["end"]["seq_per_s"] > 0
    assert base["seq_per_s"] == pytest.approx((base["start"]["seq_per_s"] + base["end"]["seq_per_s"]) / 2, abs=0.06)
    rows = doc["results"]
    assert list(rows) == ["batching on / v2-binary", "batching on / grpc", "batching on / grpc-stream"]
    for name, r in rows.items():
        assert r["client"] == "loadgen", name
        assert r["requests"] > 0 and r["errors"] == 0, name
        assert r["checked"] > 0 and r["wrong"] == 0, name
        want = r["throughput_rps"] * r["sequences_per_request"] / base["seq_per_s"]
        assert r["served_over_model"] == pytest.approx(want, rel=1e-3, abs=1e-6), name
    assert doc["machine"]["cores"]["usable"] >= 1
    assert proc.stdout.startswith("machine: ")
    assert "model only: Predictor (threads=1), batch 64 x 20 steps" in proc.stdout
    assert "served/model" in proc.stdout


def test_grpc_targets_need_the_started_server():
    proc = run("--url", "http://127.0.0.1:9", "--target", "grpc", timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "--target grpc with --url" in proc.stderr
