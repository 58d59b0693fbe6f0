// Read an ONNX model's metadata_props without a protobuf library: onnxruntime-node exposes input/output
// metadata but not the model's custom metadata, so we walk ModelProto's top-level fields ourselves.
'use strict';
const fs = require('fs');

const METADATA_PROPS = 14; // ModelProto.metadata_props: repeated StringStringEntryProto {key = 1, value = 2}
const PREFIX = 'lstm_onnx.';
const JSON_KEYS = new Set(['config', 'normalization', 'feature_names', 'target_names', 'io', 'stateful']);

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

// Our keys (lstm_onnx.*), decoded like runtimes/metadata.py: JSON where structured.
function readMetadata(path) {
  const buf = fs.readFileSync(path);
  const meta = {};
  for (const [field, value] of fields(buf)) {
    if (field !== METADATA_PROPS) continue;
    let key = '', text = '';
    for (const [f, v] of fields(value)) {
      if (f === 1) key = v.toString('utf8');
      if (f === 2) text = v.toString('utf8');
    }
    if (!key.startsWith(PREFIX)) continue;
    const short = key.slice(PREFIX.length);
    meta[short] = JSON_KEYS.has(short) ? JSON.parse(text) : text;
  }
  return meta;
}

module.exports = { readMetadata };
