"""examples/web in headless Chromium, for the browser test and `make docs-embedding`: a loopback HTTP server for
examples/ (the page, the shared contract module, onnxruntime-web from node_modules) with a data folder at
/data/, and the page driven by examples/web/drive.js (playwright-core)."""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
WEB = EXAMPLES / "web"


def chromium() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def missing() -> str | None:
    """Why the page cannot be driven here (None: it can)."""
    if not shutil.which("node"):
        return "node is not on PATH"
    if not chromium():
        return "chromium is not installed (apt-get install chromium; make test-web does it as root)"
    for package in ("onnxruntime-web", "playwright-core"):
        if not (WEB / "node_modules" / package).is_dir():
            return f"examples/web/node_modules/{package} is missing (make web-deps)"
    return None


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript"}

    def __init__(self, *args, data: Path, **kwargs):
        self.data = data
        super().__init__(*args, directory=str(EXAMPLES), **kwargs)

    def translate_path(self, path):
        if path.startswith("/data/"):
            return str(self.data / Path(path.split("?")[0][len("/data/"):]).name)
        return super().translate_path(path)

    def log_message(self, *args):
        pass


@contextmanager
def serve(data: Path):
    """http://127.0.0.1:PORT serving examples/ and `data` at /data/, for the block's duration."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, data=Path(data)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def page_url(base: str, **params) -> str:
    return f"{base}/web/index.html?{urlencode(params)}"


def drive(url: str, screenshot: Path | None = None, timeout_s: float = 120) -> dict:
    """What the page computed (window.lstmResult); RuntimeError with the driver's line if it failed."""
    cmd = ["node", str(WEB / "drive.js"), url, "--timeout-ms", str(int(timeout_s * 1000) - 5000)]
    if screenshot:
        cmd += ["--screenshot", str(screenshot)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                       env={**os.environ, "CHROMIUM": chromium() or ""})
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip()[-500:] or f"drive.js exited {r.returncode}")
    return json.loads(r.stdout)


def run_models(cases: list[tuple[Path, dict]], data: Path, ep: str = "wasm") -> tuple[list, dict]:
    """Each (model file, feeds) run once in the page on `ep`: per case {output: array} or the error text;
    and the page's facts (ep, webgpu, userAgent)."""
    import numpy as np

    listed = []
    for k, (model, feeds) in enumerate(cases):
        name = f"case{k}-{Path(model).name}"
        shutil.copyfile(model, data / name)
        listed.append({"model": f"/data/{name}", "feeds": {
            n: {"type": str(v.dtype), "dims": list(v.shape), "data": v.ravel().tolist()} for n, v in feeds.items()}})
    (data / "cases.json").write_text(json.dumps({"cases": listed}))
    with serve(data) as base:
        result = drive(page_url(base, mode="run", cases="/data/cases.json", ep=ep))
    if "error" in result:
        raise RuntimeError(f"the page failed: {result['error']}")
    out = [c["error"] if "error" in c else
           {n: np.asarray(o["data"], np.float32).reshape(o["dims"]) for n, o in c["outputs"].items()}
           for c in result.pop("cases")]
    return out, result
