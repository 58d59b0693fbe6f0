// The model contract (docs/model-format.md) in JavaScript, shared by examples/node (onnxruntime-node) and
// examples/web (onnxruntime-web): read an exported model's metadata from its bytes, normalize raw features,
// carry h/c between steps and denormalize, exactly as Python's runtimes/embed.py Predictor does.
// Both onnxruntime packages have the same Tensor and InferenceSession API, so the caller passes its `ort`.
// A plain script: in a page it defines `LstmContract`; in Node, module.exports.
(function (root, factory) {
  if (typeof module === 'object' && module.exports) module.exports = factory();
  else root.LstmContract = factory();
}(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  const METADATA_PROPS = 14; // ModelProto.metadata_props: repeated StringStringEntryProto {key = 1, value = 2}
  const PREFIX = 'lstm_onnx.';
  // The keys stored as JSON text (x-encoding json in core/model_metadata.schema.json; a test keeps them equal).
  const JSON_KEYS = ['accuracy', 'batch_size', 'columns', 'config', 'feature_names', 'int8', 'io', 'normalization',
    'probe', 'seq_len', 'series_normalization', 'stateful', 'target_names', 'validated_on'];

  function readVarint(buf, pos) {
    let value = 0, shift = 0, byte;
    do {
      byte = buf[pos++];
      value += (byte & 0x7f) * 2 ** shift; // no bit ops: lengths may pass 2^31
      shift += 7;
    } while (byte & 0x80);
    return [value, pos];
  }

  function* fields(buf, start = 0, end = buf.length) {
    let pos = start;
    while (pos < end) {
      let key, value;
      [key, pos] = readVarint(buf, pos);
      const field = Math.floor(key / 8), wire = key & 7;
      if (wire === 0) { [value, pos] = readVarint(buf, pos); yield [field, value]; }
      else if (wire === 1) { pos += 8; }
      else if (wire === 5) { pos += 4; }
      else if (wire === 2) {
        let len; [len, pos] = readVarint(buf, pos);
        yield [field, buf.subarray(pos, pos + len)];
        pos += len;
      } else { throw new Error(`unsupported protobuf wire type ${wire}`); }
    }
  }

  // Our keys (lstm_onnx.*) from an ONNX file's bytes, decoded like core/metadata.py: JSON where structured.
  // Neither onnxruntime-node nor onnxruntime-web exposes a model's custom metadata, so we walk ModelProto.
  function readMetadata(bytes) {
    const buf = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const text = new TextDecoder('utf-8');
    const meta = {};
    for (const [field, value] of fields(buf)) {
      if (field !== METADATA_PROPS) continue;
      let key = '', val = '';
      for (const [f, v] of fields(value)) {
        if (f === 1) key = text.decode(v);
        if (f === 2) val = text.decode(v);
      }
      if (!key.startsWith(PREFIX)) continue;
      const short = key.slice(PREFIX.length);
      meta[short] = JSON_KEYS.includes(short) ? JSON.parse(val) : val;
    }
    return meta;
  }

  // Streams one sequence: raw features in, raw targets out, h/c carried between calls. The sizes come from
  // the metadata (config.model), the inputs from the contract: x, h0/c0 (--stateful), lengths (--lengths).
  class Stepper {
    constructor(ort, session, meta) {
      const model = (meta.config || {}).model;
      if (!model) throw new Error('the model has no lstm_onnx.config metadata: export it with lstm-pipeline');
      if (model.batch_first === false) throw new Error('this example drives batch_first models only');
      if (meta.stateful !== true) throw new Error('streaming needs a model exported with --stateful (h0/c0 inputs)');
      this.ort = ort;
      this.session = session;
      this.head = model.head || 'last';
      this.numFeatures = model.input_size;
      this.stateDims = [model.num_layers * (model.bidirectional ? 2 : 1), 1, model.hidden_size];
      this.hasLengths = session.inputNames.includes('lengths');
      this.norm = meta.normalization || null;
      this.reset();
    }

    reset() {
      const size = this.stateDims.reduce((a, b) => a * b, 1);
      this.h = new this.ort.Tensor('float32', new Float32Array(size), this.stateDims);
      this.c = new this.ort.Tensor('float32', new Float32Array(size), this.stateDims);
    }

    normalize(chunk) {
      const F = this.numFeatures, x = new Float32Array(chunk.length * F);
      chunk.forEach((row, t) => {
        if (row.length !== F) throw new Error(`step ${t} has ${row.length} features, expected ${F}`);
        row.forEach((v, j) => {
          if (!Number.isFinite(v)) throw new Error(`step ${t}, feature ${j} is not a finite number`);
          // float32 arithmetic, as numpy does it on float32 arrays in Predictor.normalize
          x[t * F + j] = this.norm ? Math.fround(Math.fround(v - Math.fround(this.norm.input_mean[j]))
            / Math.fround(this.norm.input_std[j])) : v;
        });
      });
      return x;
    }

    // chunk: steps x features raw numbers (one stream). Returns y: [O] (last) or [steps][O] (sequence).
    async step(chunk) {
      const k = chunk.length;
      const feeds = {
        x: new this.ort.Tensor('float32', this.normalize(chunk), [1, k, this.numFeatures]), h0: this.h, c0: this.c,
      };
      if (this.hasLengths) feeds.lengths = new this.ort.Tensor('int32', Int32Array.from([k]), [1]);
      const out = await this.session.run(feeds);
      this.h = out.hn;
      this.c = out.cn;
      return this.denormalize(out.y);
    }

    denormalize(y) {
      const O = y.dims[y.dims.length - 1], rows = [];
      const scale = this.norm && this.head !== 'classify';
      for (let r = 0; r < y.data.length / O; r++) {
        rows.push(Array.from(y.data.subarray(r * O, (r + 1) * O), (v, j) => (scale
          ? Math.fround(Math.fround(v * Math.fround(this.norm.target_std[j])) + Math.fround(this.norm.target_mean[j]))
          : v)));
      }
      return this.head === 'sequence' ? rows : rows[0];
    }
  }

  // A stepper over model bytes; `options`: onnxruntime session options (executionProviders, ...).
  async function loadStepper(ort, bytes, options = {}) {
    const buf = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const session = await ort.InferenceSession.create(buf, options);
    return new Stepper(ort, session, readMetadata(buf));
  }

  return { JSON_KEYS, PREFIX, readMetadata, Stepper, loadStepper };
}));
