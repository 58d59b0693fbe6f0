"""One parity table for every embedding target: the same raw series streamed step by step (h/c carried) through
Python's Predictor (.onnx and .ort), examples/node (onnxruntime-node) and examples/web in headless Chromium
(onnxruntime-web, WASM), each against PyTorch on the same prefixes, at the same float32 tolerance. Prints a
markdown table (docs/embedding.md, `make docs-embedding`); --screenshot saves the page with forecast and truth.

    python -m benchmarks.embedding_parity --checkpoint artifacts/model.pt -o artifacts/embedding [--steps 120]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks import web_page

NODE_DIR = web_page.EXAMPLES / "node"


def machine() -> str:
    name = platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} logical CPUs, {platform.system()}"


def test_series(ckpt, steps: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw features [steps, F] from the end of the checkpoint's series (its test segment), and the raw targets
    `horizon` steps after each. Only the synthetic task keeps its series whole; other tasks give their first
    test window, without truth."""
    from lstm_onnx.pipeline.data import load_dataset, synthetic_series

    data = ckpt.config.data
    if data.task == "synthetic":
        series = synthetic_series(data)
        names = [f"f{k}" for k in range(series.shape[1])]
        cols = [names.index(t) for t in ckpt.target_names]
        start = len(series) - steps - data.horizon
        return (series[start:start + steps, [names.index(f) for f in ckpt.feature_names]],
                series[start + data.horizon:start + steps + data.horizon, cols])
    n = ckpt.normalization
    window = load_dataset(data).test.x[0][:steps]
    return (window * n.input_std + n.input_mean).astype(np.float32), None


def torch_prefixes(ckpt, x: np.ndarray) -> np.ndarray:
    """PyTorch's raw output after each prefix x[:t+1]: what a stream must give at step t."""
    import torch

    n = ckpt.normalization
    model = ckpt.build_model().eval()
    xn = torch.from_numpy(((x - n.input_mean) / n.input_std).astype(np.float32))[None]
    with torch.no_grad():
        ys = [model(xn[:, :t + 1])[0][0].numpy() for t in range(len(x))]
    ys = np.stack([y[-1] if y.ndim == 2 else y for y in ys])
    return ys if ckpt.model_config.head == "classify" else ys * n.target_std + n.target_mean


def last_rows(outputs) -> np.ndarray:
    return np.stack([np.asarray(y, np.float32).reshape(-1, np.shape(y)[-1])[-1] for y in outputs])


def python_stream(path, x) -> list:
    from lstm_onnx.runtimes.embed import Predictor

    stepper = Predictor.load(path).stream()
    return [stepper.step(frame[None, None])[0] for frame in x]


def node_stream(model, folder: Path, x) -> list | str:
    if not (shutil.which("node") and (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir()):
        return "not run: node or examples/node/node_modules missing (make node-deps)"
    (folder / "in.json").write_text(json.dumps({"chunks": [[row.tolist()] for row in x]}))
    r = subprocess.run(["node", str(NODE_DIR / "stream.js"), str(model), str(folder / "in.json")],
                       capture_output=True, text=True, timeout=300)
    return json.loads(r.stdout)["outputs"] if r.returncode == 0 else f"failed: {r.stderr.strip()[:200]}"


def browser_stream(model, folder: Path, x, truth, screenshot: Path | None) -> tuple[list | str, str]:
    why = web_page.missing()
    if why:
        return f"not run: {why}", ""
    series = {"chunks": [[row.tolist()] for row in x]}
    if truth is not None:
        series["truth"] = truth.tolist()
    (folder / "series.json").write_text(json.dumps(series))
    shutil.copyfile(model, folder / "model.onnx")
    with web_page.serve(folder) as base:
        result = web_page.drive(web_page.page_url(base, model="/data/model.onnx", series="/data/series.json"),
                                screenshot)
    if "error" in result:
        return f"failed: {result['error']}", result.get("userAgent", "")
    return result["outputs"], result["userAgent"]


def versions() -> dict[str, str]:
    import onnxruntime

    def npm_version(folder: Path, package: str) -> str:
        try:
            return json.loads((folder / "node_modules" / package / "package.json").read_text())["version"]
        except OSError:
            return "?"

    return {"ort": onnxruntime.__version__, "node": npm_version(NODE_DIR, "onnxruntime-node"),
            "web": npm_version(web_page.WEB, "onnxruntime-web")}


def main(argv=None) -> int:
    from lstm_onnx.exporters.export import ExportOptions, export_checkpoint
    from lstm_onnx.pipeline.checkpoint import load_checkpoint
    from lstm_onnx.runtimes.ort_format import convert
    from lstm_onnx.runtimes.tolerances import default_tolerance

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("-o", "--out", default="artifacts/embedding")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--screenshot", help="save the page, forecast against truth, as this PNG")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(args.checkpoint)
    model = out / "model-serve.onnx"
    export_checkpoint(ckpt, model, ExportOptions(stateful=True, lengths=True))
    convert(model, out / "model-serve.ort", "basic")
    x, truth = test_series(ckpt, args.steps)
    expected = torch_prefixes(ckpt, x)
    v = versions()
    browser, agent = browser_stream(model, out, x, truth, Path(args.screenshot) if args.screenshot else None)
    targets = [
        ("Python `Predictor`, `.onnx`", f"onnxruntime {v['ort']}", python_stream(model, x)),
        ("Python `Predictor`, `.ort` (basic)", f"onnxruntime {v['ort']}", python_stream(out / "model-serve.ort", x)),
        ("Node.js, `examples/node`", f"onnxruntime-node {v['node']}", node_stream(model, out, x)),
        ("browser, `examples/web`", f"onnxruntime-web {v['web']} (WASM)", browser),
    ]
    tol = default_tolerance("float32")
    print(f"Machine: {machine()}; browser: {agent.split(') ')[-1] if agent else 'none'}. The model: "
          f"`--stateful --lengths` export of `{Path(args.checkpoint).name}`, {len(x)} steps of its test series fed "
          f"one at a time (h/c carried), each output against PyTorch on the same prefix; pass: |diff| <= "
          f"{tol.atol:g} + {tol.rtol:g}·|PyTorch|.\n")
    print("| target | runtime | max abs diff | max rel diff | pass |")
    print("|---|---|---|---|---|")
    failed = False
    for name, runtime, got in targets:
        if isinstance(got, str):
            print(f"| {name} | {runtime} | {got} | | |")
            continue
        y = last_rows(got)
        diff = np.abs(y - expected)
        passed = bool(np.all(diff <= tol.atol + tol.rtol * np.abs(expected)))
        failed |= not passed
        rel = float((diff / np.maximum(np.abs(expected), 1e-12)).max())
        print(f"| {name} | {runtime} | {diff.max():.2e} | {rel:.2e} | {'yes' if passed else '**no**'} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
