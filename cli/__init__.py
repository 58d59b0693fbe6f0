"""`lstm-pipeline`: one click group; each command imports the layer it drives when it runs.

Importing the CLI sets the worker wait policy (core/threads.py) before anything loads torch or onnxruntime.
"""
from lstm_onnx.core import threads as _threads

_threads.apply_wait_policy()
