"""lstm-onnx-pipeline: peephole LSTMs from PyTorch to ONNX's native LSTM op, checked on every runtime."""
__version__ = "0.1.0"
