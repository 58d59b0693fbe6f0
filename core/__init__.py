"""The floor every layer stands on: atomic file writes, the ONNX metadata contract, the gate layout.

Needs numpy alone (onnx and onnxruntime are imported where used), so a deploy install can import it.
"""
__version__ = "0.1.0"
