// The Node.js twin of runtimes/embed.py's Predictor.stream(): raw features in, raw targets out, h/c carried.
// The contract (metadata, normalization, state) is examples/common/lstm_contract.js, shared with examples/web.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');
const { loadStepper: load, readMetadata } = require('../common/lstm_contract');

async function loadStepper(path) {
  return load(ort, fs.readFileSync(path), { executionProviders: ['cpu'] });
}

module.exports = { loadStepper, readMetadata: (path) => readMetadata(fs.readFileSync(path)) };
