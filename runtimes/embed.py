"""Embed an exported model in an app: numpy + onnxruntime only (no torch, no click, no web framework).

    from runtimes.embed import Predictor
    pred = Predictor.load("model.onnx")            # provider="cpu" | "cuda" | ...
    y = pred.predict(raw_x)                        # raw features [batch, seq, F]; raw targets out
    stepper = pred.stream()                        # needs a model exported with --stateful
    for x_t in frames: y_t = stepper.step(x_t)     # x_t [batch, F] or [batch, k, F]
"""
from __future__ import annotations

import numpy as np

from runtimes import metadata


class PredictorError(ValueError):
    """Bad input or a model this API cannot drive; the message says what was expected."""


class Predictor:
    def __init__(self, session, meta: dict):
        self.session = session
        self.meta = meta
        cfg = meta.get("config", {}).get("model", {})
        self.batch_first = bool(cfg.get("batch_first", True))
        self.head = cfg.get("head", "last")
        self.num_features = int(session.get_inputs()[0].shape[-1])
        self.inputs = {i.name: i for i in session.get_inputs()}
        self.output_names = [o.name for o in session.get_outputs()]
        norm = meta.get("normalization")
        self._norm = {k: np.asarray(v, np.float32) for k, v in norm.items()} if norm else None

    @classmethod
    def load(cls, path, provider: str = "cpu", threads: int = 0) -> "Predictor":
        import onnxruntime as ort

        from runtimes.ort import resolve_provider

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(str(path), sess_options=opts, providers=[resolve_provider(provider)])
        except Exception as exc:  # onnxruntime's own exception types
            raise PredictorError(f"cannot load {path}: {str(exc).splitlines()[0]}") from None
        props = session.get_modelmeta().custom_metadata_map
        return cls(session, metadata.decode(props))

    @property
    def stateful(self) -> bool:
        return "h0" in self.inputs

    def normalize(self, x: np.ndarray) -> np.ndarray:
        if self._norm is None:
            return x
        return ((x - self._norm["input_mean"]) / self._norm["input_std"]).astype(np.float32)

    def denormalize(self, y: np.ndarray) -> np.ndarray:
        if self._norm is None or self.head == "classify":
            return y
        return y * self._norm["target_std"] + self._norm["target_mean"]

    def check_input(self, x) -> np.ndarray:
        try:
            x = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError):
            raise PredictorError("input must be numbers shaped [batch, seq, features]") from None
        if x.ndim != 3 or x.shape[2] != self.num_features:
            raise PredictorError(f"input shape {list(x.shape)} does not fit: expected "
                                 f"[batch, seq, {self.num_features}]")
        if 0 in x.shape[:2]:
            raise PredictorError(f"input shape {list(x.shape)} is empty: need at least one sequence and step")
        if not np.isfinite(x).all():
            raise PredictorError("input contains NaN or Inf")
        return x

    def feeds(self, x: np.ndarray, lengths=None, normalize: bool = True) -> dict:
        """Batch-major raw x [B, S, F] -> the model's feeds (normalized, in its layout)."""
        x = self.check_input(x)
        xn = self.normalize(x) if normalize else x
        feeds = {"x": xn if self.batch_first else np.ascontiguousarray(xn.transpose(1, 0, 2))}
        if lengths is not None:
            if "lengths" not in self.inputs:
                raise PredictorError("this model has no `lengths` input: export it with --lengths")
            lengths = np.asarray(lengths, dtype=np.int32).reshape(-1)
            if len(lengths) != x.shape[0] or lengths.min() < 1 or lengths.max() > x.shape[1]:
                raise PredictorError(f"lengths must be {x.shape[0]} values in 1..{x.shape[1]}")
            feeds["lengths"] = lengths
        elif "lengths" in self.inputs:
            feeds["lengths"] = np.full(x.shape[0], x.shape[1], np.int32)
        return feeds

    def run(self, feeds: dict) -> dict:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def predict(self, x, lengths=None, normalize: bool = True) -> np.ndarray:
        """Raw x [batch, seq, F] -> y in raw target units (logits for classifiers); batch-major."""
        feeds = self.feeds(x, lengths, normalize)
        if self.stateful:
            n_states, _, hidden = self.inputs["h0"].shape
            zeros = np.zeros((n_states, feeds["x"].shape[0 if self.batch_first else 1], hidden), np.float32)
            feeds.update(h0=zeros, c0=zeros)
        y = self.run(feeds)["y"]
        if self.head == "sequence" and not self.batch_first:
            y = y.transpose(1, 0, 2)
        return self.denormalize(y) if normalize else y

    def stream(self, batch: int = 1) -> "Stepper":
        if not self.stateful:
            raise PredictorError("streaming needs a model exported with --stateful (h0/c0 inputs)")
        return Stepper(self, batch)


class Stepper:
    """Carries h/c between calls: feeding a sequence in chunks equals one whole pass."""

    def __init__(self, predictor: Predictor, batch: int):
        self.p = predictor
        n_states, _, hidden = predictor.inputs["h0"].shape
        self.h = np.zeros((n_states, batch, hidden), np.float32)
        self.c = np.zeros_like(self.h)

    def step(self, x) -> np.ndarray:
        """x: one step [batch, F] or a chunk [batch, k, F] of raw features; returns y for that chunk."""
        x = np.asarray(x, dtype=np.float32)
        feeds = self.p.feeds(x[:, None, :] if x.ndim == 2 else x)
        feeds.update(h0=self.h, c0=self.c)
        out = self.p.run(feeds)
        self.h, self.c = out["hn"], out["cn"]
        y = out["y"]
        if self.p.head == "sequence" and not self.p.batch_first:
            y = y.transpose(1, 0, 2)
        return self.p.denormalize(y)
