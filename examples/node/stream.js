// Stream a sequence through an exported model, chunk by chunk, carrying h/c between calls.
//   node stream.js model.onnx input.json [output.json]
// input.json: {"chunks": [[[F raw numbers] per step] per chunk]}; prints (or writes) {"outputs": [y per chunk]}.
'use strict';
const fs = require('fs');
const { loadStepper } = require('./predictor');

async function main([modelPath, inputPath, outputPath]) {
  if (!modelPath || !inputPath) {
    console.error('usage: node stream.js model.onnx input.json [output.json]');
    process.exit(2);
  }
  const stepper = await loadStepper(modelPath);
  const { chunks } = JSON.parse(fs.readFileSync(inputPath, 'utf8'));
  const outputs = [];
  for (const chunk of chunks) outputs.push(await stepper.step(chunk));
  const text = JSON.stringify({ outputs });
  if (outputPath) fs.writeFileSync(outputPath, text);
  else console.log(text);
}

main(process.argv.slice(2)).catch((err) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});
