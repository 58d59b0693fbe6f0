// The Node.js twin of runtimes/embed.py's Predictor.stream(): raw features in, raw targets out, h/c carried.
'use strict';
const ort = require('onnxruntime-node');
const { readMetadata } = require('./metadata');

class Stepper {
  constructor(session, meta) {
    this.session = session;
    const model = (meta.config || {}).model || {};
    this.head = model.head || 'last';
    if (model.batch_first === false) throw new Error('this example drives batch_first models only');
    const h0 = session.inputMetadata.find((m) => m.name === 'h0');
    if (!h0) throw new Error('streaming needs a model exported with --stateful (h0/c0 inputs)');
    this.stateDims = [h0.shape[0], 1, h0.shape[2]]; // [layers*directions, batch = 1, H]
    this.numFeatures = session.inputMetadata.find((m) => m.name === 'x').shape[2];
    this.hasLengths = session.inputNames.includes('lengths');
    this.norm = meta.normalization || null;
    this.reset();
  }

  reset() {
    const size = this.stateDims.reduce((a, b) => a * b, 1);
    this.h = new ort.Tensor('float32', new Float32Array(size), this.stateDims);
    this.c = new ort.Tensor('float32', new Float32Array(size), this.stateDims);
  }

  // chunk: steps x features raw numbers (one stream). Returns y as arrays: [O] (last) or [steps][O].
  async step(chunk) {
    const F = this.numFeatures, k = chunk.length;
    const x = new Float32Array(k * F);
    chunk.forEach((row, t) => {
      if (row.length !== F) throw new Error(`step ${t} has ${row.length} features, expected ${F}`);
      row.forEach((v, j) => {
        if (!Number.isFinite(v)) throw new Error(`step ${t}, feature ${j} is not a finite number`);
        x[t * F + j] = this.norm ? (v - this.norm.input_mean[j]) / this.norm.input_std[j] : v;
      });
    });
    const feeds = { x: new ort.Tensor('float32', x, [1, k, F]), h0: this.h, c0: this.c };
    if (this.hasLengths) feeds.lengths = new ort.Tensor('int32', Int32Array.from([k]), [1]);
    const out = await this.session.run(feeds);
    this.h = out.hn;
    this.c = out.cn;
    return this.denormalize(out.y);
  }

  denormalize(y) {
    const O = y.dims[y.dims.length - 1];
    const rows = [];
    for (let r = 0; r < y.data.length / O; r++) {
      rows.push(Array.from(y.data.subarray(r * O, (r + 1) * O), (v, j) =>
        this.norm && this.head !== 'classify' ? v * this.norm.target_std[j] + this.norm.target_mean[j] : v));
    }
    return this.head === 'sequence' ? rows : rows[0];
  }
}

async function loadStepper(path) {
  const session = await ort.InferenceSession.create(path, { executionProviders: ['cpu'] });
  return new Stepper(session, readMetadata(path));
}

module.exports = { loadStepper, readMetadata };
