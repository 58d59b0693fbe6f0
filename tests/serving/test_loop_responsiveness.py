"""/healthz shares the event loop with body parsing: big bodies are parsed in a child process, so the probe
stays quick while 8 clients send 4 MB bodies at once (issue 14 measured a 531 ms stall)."""
from __future__ import annotations

import http.client
import threading
import time

import numpy as np
import pytest

from lstm_onnx.serving.settings import ServeSettings
from tests.harness import record
from tests.serving.harness_tools import Live

# Measured on a loaded 2-core machine: 28-54 ms with big bodies parsed in the parse process, 460 ms with them
# parsed by the server (531 ms in issue 14). 150 ms is three times the worst seen, a third of the defect.
BOUND_S = 0.15


def big_body(rng) -> bytes:
    x = rng.normal(5, 2, (100, 1024, 3))
    text = "[" + ", ".join("[" + ", ".join("[%.7f, %.7f, %.7f]" % tuple(s) for s in seq) + "]" for seq in x) + "]"
    return ('{"inputs": %s}' % text).encode()


def post(port: int, body: bytes, out: list) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/v1/predict", body, {"Content-Type": "application/json"})
    out.append(conn.getresponse().status)
    conn.close()


@pytest.mark.harness
def test_healthz_stays_responsive_while_big_bodies_parse(serve_model):
    body = big_body(np.random.default_rng(0))
    assert 3.5e6 < len(body) < 4 << 20
    settings = ServeSettings(model=str(serve_model), max_items=256, max_seq_len=1024)
    with Live(settings) as live:
        probe = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
        statuses, worst = [], 0.0
        clients = [threading.Thread(target=post, args=(live.port, body, statuses)) for _ in range(8)]
        for c in clients:
            c.start()
        while any(c.is_alive() for c in clients):
            start = time.perf_counter()
            probe.request("GET", "/healthz")
            assert probe.getresponse().read() == b'{"status":"ok"}'
            worst = max(worst, time.perf_counter() - start)
            time.sleep(0.005)
        probe.close()
    record("http", worst < BOUND_S and statuses == [200] * 8, f"/healthz worst {worst * 1e3:.0f} ms, {statuses}")
    assert statuses == [200] * 8
    assert worst < BOUND_S, f"/healthz took {worst * 1e3:.0f} ms while 8 bodies of {len(body) / 1e6:.1f} MB parsed"
