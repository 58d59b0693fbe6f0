// The page: ?model=URL (an export with --stateful) &series=URL ({"chunks": [[[F raw numbers] per step] per
// chunk], "truth": [[O raw targets] per chunk]}, truth optional) &ep=wasm|webgpu &delay=MS between steps.
// ?mode=run&cases=URL runs models once each instead: {"cases": [{"model": URL, "feeds": {name: {type, dims,
// data}}}]} gives {"cases": [{"outputs": {name: {dims, data}}} or {"error": text}]} (the capability cells).
// When it ends, window.lstmResult holds {outputs, ...} or {error}: what the tests read.
'use strict';
(async function main() {
  const params = new URLSearchParams(location.search);
  const modelUrl = params.get('model') || 'model.onnx';
  const ep = params.get('ep') || 'wasm';
  const status = document.getElementById('status');
  document.getElementById('model').textContent = modelUrl;
  document.getElementById('ep').textContent = ep;
  ort.env.wasm.wasmPaths = new URL('node_modules/onnxruntime-web/dist/', location.href).href;
  ort.env.wasm.numThreads = 1; // threads need a cross-origin-isolated page; one thread runs anywhere
  const options = { executionProviders: [ep] };
  try {
    if (params.get('mode') === 'run') {
      window.lstmResult = await runCases((await (await fetchOk(params.get('cases'))).json()).cases, options);
    } else {
      const bytes = new Uint8Array(await (await fetchOk(modelUrl)).arrayBuffer());
      window.lstmResult = await stream(bytes, await (await fetchOk(params.get('series') || 'series.json')).json(),
        options, Number(params.get('delay') || 0), status);
    }
    window.lstmResult.ep = ep;
    window.lstmResult.webgpu = typeof navigator.gpu !== 'undefined';
    status.textContent = `done: ${window.lstmResult.steps ?? 1} run(s) on ${ep}`;
  } catch (err) {
    window.lstmResult = { error: String(err && err.message ? err.message : err) };
    status.textContent = `error: ${window.lstmResult.error}`;
    status.className = 'error';
  }
}());

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}

async function stream(bytes, series, options, delay, status) {
  const stepper = await LstmContract.loadStepper(ort, bytes, options);
  const meta = LstmContract.readMetadata(bytes);
  const names = meta.target_names || ['y'];
  const chunks = series.chunks, truth = series.truth || [];
  const forecast = [], outputs = [];
  const canvas = document.getElementById('plot');
  for (let k = 0; k < chunks.length; k++) {
    const y = await stepper.step(chunks[k]);
    outputs.push(y);
    const last = Array.isArray(y[0]) ? y[y.length - 1] : y; // a sequence head: the chunk's last step
    forecast.push(last[0]);
    drawPlot(canvas, [
      { name: `truth ${names[0]}`, color: '#888', points: truth.map((t) => t[0]) },
      { name: `forecast ${names[0]}`, color: '#1565c0', points: forecast },
    ], chunks.length, `step ${k + 1} of ${chunks.length}: forecast against truth (raw units)`);
    status.textContent = `step ${k + 1} of ${chunks.length}`;
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
  return { outputs, steps: chunks.length };
}

async function runCases(cases, options) {
  const arrays = { float32: Float32Array, int32: Int32Array };
  const results = [];
  for (const { model, feeds } of cases) {
    try {
      const session = await ort.InferenceSession.create(model, options);
      const tensors = {};
      for (const [name, f] of Object.entries(feeds)) {
        tensors[name] = new ort.Tensor(f.type, arrays[f.type].from(f.data), f.dims);
      }
      const out = await session.run(tensors);
      const outputs = {};
      for (const [name, t] of Object.entries(out)) outputs[name] = { dims: t.dims, data: Array.from(t.data) };
      results.push({ outputs });
    } catch (err) {
      results.push({ error: String(err && err.message ? err.message : err).split('\n')[0] });
    }
  }
  return { cases: results, steps: cases.length };
}
