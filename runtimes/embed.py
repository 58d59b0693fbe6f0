"""Embed an exported model in an app: numpy + onnxruntime only (no torch, no click, no web framework).

    from lstm_onnx.runtimes.embed import Predictor
    pred = Predictor.load("model.onnx")            # provider="cpu" | "cuda" | ...
    y = pred.predict(raw_x)                        # raw features [batch, seq, F]; raw targets out
    y = pred.predict(raw_x, lengths=[5, 3])        # padded batch: item k uses its first lengths[k] steps
    stepper = pred.stream()                        # needs a model exported with --stateful
    for x_t in frames: y_t = stepper.step(x_t)     # x_t [batch, F] or [batch, k, F]

Normalization comes from the model's metadata: apps pass raw features and get raw targets back.
"""
from __future__ import annotations

import copy
import math
import os
import warnings

import numpy as np

from lstm_onnx.runtimes.fold import RAW_X, RAW_Y, SUM
from lstm_onnx.runtimes.session import OrtSession, PlacementWarning

_FLOAT32 = np.dtype(np.float32)


def range_problem(x: np.ndarray, safe_abs: float | None) -> str | None:
    """Why `x` cannot be normalized without overflow given a model's bound (Predictor.safe_abs), or None."""
    if safe_abs is None:
        return None
    largest = float(np.abs(x).max())
    if largest <= safe_abs:
        return None
    return (f"input values up to {largest:.3g} overflow float32 once normalized by this model's training "
            f"statistics: keep |x| under {safe_abs:.3g}")


class PredictorError(ValueError):
    """Bad input or a model this API cannot drive; the message says what was expected."""


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def affine(norm: dict) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift), float32: x_n = (x - mean) / std as one multiply-add, x * scale + shift, computed the same
    way for the global statistics and each series' so that both normalize a value to the same bits."""
    scale = (1.0 / np.asarray(norm["input_std"], np.float32)).astype(np.float32)
    return scale, (-np.asarray(norm["input_mean"], np.float32) * scale).astype(np.float32)


class Predictor:
    def __init__(self, session, meta: dict, model_path=None):
        """`session`: what runtimes.session.open_session returns (Predictor.load's way), or a bare
        onnxruntime.InferenceSession (then `placement` is None)."""
        self.opened = session if isinstance(session, OrtSession) else None
        self.session = session.session if self.opened is not None else session
        self.meta = meta
        self.model_path = model_path
        self._step_session = None  # built on the first stream(): see runtimes/fold.py
        cfg = meta.get("config", {}).get("model", {})
        self.batch_first = bool(cfg.get("batch_first", True))
        self.head = cfg.get("head", "last")
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.num_features = self._check_io()
        dims = self.inputs["x"].shape[:2]
        # [batch, seq] sizes an unrolled export fixes (None: any), batch-major.
        self.fixed = tuple(d if isinstance(d, int) else None for d in (dims if self.batch_first else dims[::-1]))
        self.has_lengths = "lengths" in self.inputs
        if self.stateful:
            self.num_states, _, self.hidden_size = self.inputs["h0"].shape
        norm = meta.get("normalization")
        self._norm = {k: np.asarray(v, np.float32) for k, v in norm.items()} if norm else None
        if self._norm is not None:
            self._scale, self._shift = affine(self._norm)
        self.safe_abs = self._safe_abs()
        by_series = meta.get("series_normalization") or {}
        # series id -> (input scale, input shift, target std, target mean): data.normalize = "series"
        self.series_normalization = {
            k: (*affine(v), np.asarray(v["target_std"], np.float32), np.asarray(v["target_mean"], np.float32))
            for k, v in by_series.items()}

    @classmethod
    def load(cls, path, provider: str = "cpu", threads: int = 0, spinning: bool | None = None, *,
             allow_tf32: bool = False, provider_options: dict | None = None, warn: bool = True) -> "Predictor":
        """`threads`: intra-op threads (0: the usable cores). `spinning=False` stops idle worker threads
        from busy-waiting (None: only under OMP_WAIT_POLICY=ACTIVE), which a server running several sessions next to an event loop wants.
        `allow_tf32`: let CUDA use TF32 (results shift by about 2.5e-4). Where a node runs on another provider
        than requested (a native LSTM with P under CUDA runs on the CPU), `placement_problems` says so, and
        `warn` issues each as a PlacementWarning. An unknown or missing provider raises runtimes.base.RunnerError."""
        from lstm_onnx.runtimes.session import SessionLoadError, open_session

        try:
            opened = open_session(path, provider, threads=threads, spinning=spinning, allow_tf32=allow_tf32,
                                  provider_options=provider_options, name=f"Predictor({provider})")
        except SessionLoadError as exc:
            raise PredictorError(f"cannot load {path}: {exc.detail}") from None
        if warn:
            for problem in opened.problems:
                warnings.warn(problem, PlacementWarning, stacklevel=2)
        from lstm_onnx.runtimes.model_metadata import MetadataError, checked_metadata

        x = next((i for i in opened.session.get_inputs() if i.name == "x"), None)
        features = x.shape[-1] if x is not None and x.shape and isinstance(x.shape[-1], int) else None
        try:
            meta = checked_metadata(opened.session.get_modelmeta().custom_metadata_map, path, features)
        except MetadataError as exc:
            raise PredictorError(str(exc)) from None
        return cls(opened, meta, path)

    def _check_io(self) -> int:
        """The feature count, once the model is known to have our I/O names."""
        x = self.inputs.get("x")
        if x is None or "y" not in self.output_names:
            raise PredictorError(f"{self.model_path or 'this model'} has inputs {list(self.inputs)} and outputs "
                                 f"{self.output_names}; Predictor drives models with input `x` [batch, seq, "
                                 f"features] and output `y`, as `lstm-pipeline export` writes them")
        if len(x.shape) != 3 or not isinstance(x.shape[-1], int):
            raise PredictorError(f"input `x` has shape {x.shape}; expected [batch, seq, features] with a fixed "
                                 f"feature count")
        return int(x.shape[-1])

    @property
    def placement(self) -> dict | None:
        """Nodes per provider, the LSTM nodes' providers and the problems (see runtimes/session.py)."""
        return self.opened.placement_report() if self.opened is not None else None

    @property
    def placement_problems(self) -> list[str]:
        return list(self.opened.problems) if self.opened is not None else []

    @property
    def stateful(self) -> bool:
        return "h0" in self.inputs

    # -- normalization
    def normalize(self, x: np.ndarray) -> np.ndarray:
        if self._norm is None:
            return x
        return x * self._scale + self._shift

    def denormalize(self, y: np.ndarray) -> np.ndarray:
        if self._norm is None or self.head == "classify":
            return y
        return y * self._norm["target_std"] + self._norm["target_mean"]

    # -- checks
    def _safe_abs(self) -> float | None:
        """The largest |x| that stays a float32 once normalized: a small training std turns a large but finite
        raw value into inf, and the model into NaN. None: no normalization, so float32 itself is the bound."""
        if self._norm is None:
            return None
        scale, shift = self._scale.astype(np.float64), self._shift.astype(np.float64)
        largest = float(np.finfo(np.float32).max)
        exact = np.min((largest - np.abs(shift)) / np.abs(scale)) * (1 - 1e-6)  # rounding
        # Every std above 1 puts the bound past float32's range: then no finite input can overflow.
        exact = min(exact, largest)
        bound = np.float32(exact)  # a float32 itself, so any number at or under it stays under after the cast
        return float(bound if bound <= exact else np.nextafter(bound, np.float32(0)))

    def range_problem(self, x: np.ndarray) -> str | None:
        """Why `x` (finite float32) cannot be normalized without overflow, or None (one pass over x)."""
        return range_problem(x, self.safe_abs)

    def check_input(self, x) -> np.ndarray:
        raw = x
        if isinstance(x, np.ndarray) and x.dtype.kind not in "biuf":  # complex would lose its imaginary part
            raise PredictorError(f"input is {x.dtype}; expected real numbers shaped [batch, seq, features]")
        try:
            with np.errstate(over="ignore"):  # values beyond float32 are refused below, by name
                x = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError):
            raise PredictorError("input must be numbers shaped [batch, seq, features]") from None
        if x.ndim != 3 or x.shape[2] != self.num_features:
            raise PredictorError(f"input shape {list(x.shape)} does not fit: expected "
                                 f"[batch, seq, {self.num_features}]")
        if 0 in x.shape[:2]:
            raise PredictorError(f"input shape {list(x.shape)} is empty: need at least one sequence and step")
        wrong_size = self._fixed_mismatch(x.shape)
        if wrong_size:
            raise PredictorError(wrong_size)
        # A sum is finite iff no element is NaN/Inf, unless it overflows: then check element-wise.
        with np.errstate(over="ignore"):
            finite_sum = np.isfinite(x.sum())
        if not finite_sum and not np.isfinite(x).all():
            if np.isfinite(np.asarray(raw, dtype=np.float64)).all():
                raise PredictorError("input has values beyond float32 (|x| <= 3.4e38)")
            raise PredictorError("input contains NaN or Inf")
        problem = self.range_problem(x)
        if problem:
            raise PredictorError(problem)
        return x

    def _fixed_mismatch(self, shape) -> str | None:
        """An unrolled export runs only at the batch and sequence length it was exported for."""
        if not any(want is not None and want != got for want, got in zip(self.fixed, shape[:2])):
            return None
        want = ", ".join("any" if d is None else str(d) for d in self.fixed)
        return (f"this model takes [batch, seq] = [{want}] only (an unrolled export), got {list(shape[:2])}: "
                f"pass that shape, or export with --form native for any size")

    def refused(self, exc: Exception, shape) -> PredictorError:
        """onnxruntime's error for a run on batch-major `shape`, as a PredictorError saying what to change."""
        return PredictorError(self._fixed_mismatch(shape)
                              or f"onnxruntime refused the input {list(shape)}: {_first_line(exc)}")

    def _check_lengths(self, lengths, batch: int, seq: int) -> np.ndarray:
        try:
            lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError):
            raise PredictorError("lengths must be integers") from None
        if len(lengths) != batch or lengths.min() < 1 or lengths.max() > seq:
            raise PredictorError(f"lengths must be {batch} integers in 1..{seq}, got {lengths.tolist()}")
        return lengths.astype(np.int32)

    # -- running
    def feeds(self, x: np.ndarray, lengths=None, normalize: bool = True) -> dict:
        """Batch-major raw x [B, S, F] -> the model's feeds (normalized, in its layout)."""
        x = self.check_input(x)
        xn = self.normalize(x) if normalize else x
        feeds = {"x": xn if self.batch_first else np.ascontiguousarray(xn.transpose(1, 0, 2))}
        if lengths is not None:
            if not self.has_lengths:
                raise PredictorError("this model has no `lengths` input: export it with --lengths")
            feeds["lengths"] = self._check_lengths(lengths, x.shape[0], x.shape[1])
        elif self.has_lengths:
            feeds["lengths"] = np.full(x.shape[0], x.shape[1], np.int32)
        return feeds

    def run(self, feeds: dict) -> dict:
        try:
            outputs = self.session.run(self.output_names, feeds)
        except Exception as exc:  # onnxruntime's own types (InvalidArgument, Fail, ...)
            x = feeds["x"]
            raise self.refused(exc, x.shape if self.batch_first else x.shape[1::-1] + x.shape[2:]) from None
        return dict(zip(self.output_names, outputs))

    def zero_state(self, batch: int) -> np.ndarray:
        return np.zeros((self.num_states, batch, self.hidden_size), np.float32)

    def _batch_major_y(self, y: np.ndarray) -> np.ndarray:
        return y.transpose(1, 0, 2) if self.head == "sequence" and not self.batch_first else y

    def predict(self, x, lengths=None, normalize: bool = True, series=None) -> np.ndarray:
        """Raw x [batch, seq, F] -> y in raw target units (logits for classifiers); batch-major.

        `lengths`: valid steps per item of a padded batch. A model exported with --lengths runs the batch
        once; any other model runs each group of equal length on its own. Either way item k sees only its
        first lengths[k] steps. For sequence heads, y past an item's length is 0.
        `series`: each item's series id, for a model trained with per-series normalization
        (`series_normalization`); each item is normalized, and its y restored, with its series' statistics.
        """
        if self.series_normalization and normalize:
            if series is None:
                raise PredictorError(f"this model normalizes each series with its own statistics: pass series=[one "
                                     f"id per item] (it knows {', '.join(map(repr, list(self.series_normalization)[:5]))}"
                                     f"{', ...' if len(self.series_normalization) > 5 else ''})")
            return self._predict_series(self.check_input(x), series, lengths)
        if lengths is not None and not self.has_lengths:
            x = self.check_input(x)
            return self._predict_grouped(x, self._check_lengths(lengths, x.shape[0], x.shape[1]), normalize)
        feeds = self.feeds(x, lengths, normalize)
        if self.stateful:
            zeros = self.zero_state(feeds["x"].shape[0 if self.batch_first else 1])
            feeds.update(h0=zeros, c0=zeros)
        y = self._batch_major_y(self.run(feeds)["y"])
        y = self.denormalize(y) if normalize else y
        if lengths is not None and self.head == "sequence":
            y = y.copy()
            y[np.arange(y.shape[1])[None, :] >= feeds["lengths"][:, None]] = 0.0
        return y

    def _predict_series(self, x: np.ndarray, series, lengths) -> np.ndarray:
        series = [str(s) for s in np.asarray(series).reshape(-1)]
        if len(series) != len(x):
            raise PredictorError(f"series must name one series per item: {len(x)} items, {len(series)} ids")
        unknown = sorted(set(series) - set(self.series_normalization))
        if unknown:
            raise PredictorError(f"unknown series {', '.join(map(repr, unknown[:5]))}: this model knows "
                                 f"{', '.join(map(repr, list(self.series_normalization)[:20]))}")
        scale, shift, std, mean = (np.stack(a) for a in zip(*(self.series_normalization[s] for s in series)))
        with np.errstate(over="ignore"):
            xn = x * scale[:, None, :] + shift[:, None, :]
        y = self.predict(xn, lengths=lengths, normalize=False)
        if self.head == "classify":
            return y
        shape = (len(x),) + (1,) * (y.ndim - 2) + (y.shape[-1],)
        return y * std.reshape(shape) + mean.reshape(shape)

    def forecast(self, table, rolling: bool = False) -> dict[str, list]:
        """Forecasts from raw history laid out like the training table (a CSV file with a header row, a pandas
        DataFrame or a mapping of column name -> values; other columns are ignored), labelled with series and time: see
        runtimes/forecast.py. Needs a model trained on a table (metadata `columns`)."""
        from lstm_onnx.runtimes.forecast import TableError, forecast

        if isinstance(table, (str, os.PathLike)):
            table = _csv_columns(table)
        elif hasattr(table, "to_dict") and hasattr(table, "columns"):  # a pandas DataFrame, without importing pandas
            table = {str(c): [str(v) for v in table[c].tolist()] for c in table.columns}
        try:
            return forecast(self, table, rolling)
        except TableError as exc:
            raise PredictorError(str(exc)) from None

    def _predict_grouped(self, x: np.ndarray, lengths: np.ndarray, normalize: bool) -> np.ndarray:
        out = None
        for n in np.unique(lengths):
            idx = np.flatnonzero(lengths == n)
            y = self.predict(x[idx, :n], normalize=normalize)
            if out is None:
                shape = (x.shape[0], x.shape[1], y.shape[2]) if self.head == "sequence" else (x.shape[0],) + y.shape[1:]
                out = np.zeros(shape, np.float32)
            if self.head == "sequence":
                out[idx, :n] = y
            else:
                out[idx] = y
        return out

    def run_ragged(self, xs: list[np.ndarray], states: list | None = None, keep_state=True) -> list[dict]:
        """Items of different lengths in as few runs as the model allows; what a server batches.

        xs: raw [S_k, F] per item (already checked). states: per item None or (h [L, H], c [L, H]).
        Returns per item {"y": [O] or [S_k, O] in raw units, and for stateful models "hn", "cn" [L, H]}.
        keep_state: False, or per item a bool, leaves out the hn/cn of the items that will not go on.
        With a `lengths` input the items are padded into one run; otherwise each equal-length group runs
        alone. For float models an item's result equals running it by itself. For int8 models it does not:
        dynamic quantization takes one activation range per run, so batch-mates change it (demo model, 8
        validation windows per run: by up to 0.036 in target units; more when a batch-mate's values are far
        larger). The server therefore never batches requests of an int8 model together.
        """
        if self.series_normalization:  # items carry no series id here: the global statistics would be wrong
            raise PredictorError("this model normalizes each series with its own statistics, which a request of "
                                 "bare windows does not name: use Predictor.forecast or predict(x, series=...)")
        states = states or [None] * len(xs)
        if not isinstance(keep_state, list):
            keep_state = [keep_state] * len(xs)
        lens = np.array([len(x) for x in xs], np.int32)
        groups = [np.arange(len(xs))] if self.has_lengths else [np.flatnonzero(lens == n) for n in np.unique(lens)]
        results: list[dict] = [None] * len(xs)  # type: ignore[list-item]
        for idx in groups:
            self._run_group(xs, states, keep_state, lens, idx, results)
        return results

    def _run_group(self, xs, states, keep_state, lens, idx, results) -> None:
        seq = int(lens[idx].max())
        if int(lens[idx].min()) == seq:  # no padding: one copy in C instead of one per item
            x = np.stack([xs[k] for k in idx]).astype(np.float32, copy=False)
        else:
            x = np.zeros((len(idx), seq, self.num_features), np.float32)
            for row, k in enumerate(idx):
                x[row, :lens[k]] = xs[k]
        xn = self.normalize(x)
        feeds = {"x": xn if self.batch_first else np.ascontiguousarray(xn.transpose(1, 0, 2))}
        if self.has_lengths:
            feeds["lengths"] = lens[idx]
        if self.stateful:
            h0, c0 = self.zero_state(len(idx)), self.zero_state(len(idx))
            for row, k in enumerate(idx):
                if states[k] is not None:
                    h0[:, row], c0[:, row] = states[k]
            feeds.update(h0=h0, c0=c0)
        out = self.run(feeds)
        y = self.denormalize(self._batch_major_y(out["y"]))
        for row, k in enumerate(idx):
            item = {"y": y[row, :lens[k]] if self.head == "sequence" else y[row]}
            if self.stateful and keep_state[k]:
                item.update(hn=out["hn"][:, row].copy(), cn=out["cn"][:, row].copy())
            results[k] = item

    def stream(self, batch: int = 1, fold: bool = True, series: str | None = None) -> "Stepper":
        """A Stepper; `series`: the series it streams, for a model with per-series statistics."""
        if not self.stateful:
            raise PredictorError("streaming needs a model exported with --stateful (h0/c0 inputs)")
        if self.series_normalization:
            if series is None:
                raise PredictorError("this model normalizes each series with its own statistics: stream(series=ID)")
            return Stepper(self.for_series(series), batch, fold)
        return Stepper(self, batch, fold)

    def for_series(self, series: str) -> "Predictor":
        """This model with one series' statistics as its normalization (the same session)."""
        if str(series) not in self.series_normalization:
            raise PredictorError(f"unknown series {series!r}: this model knows "
                                 f"{', '.join(map(repr, list(self.series_normalization)[:20]))}")
        view = copy.copy(self)
        norm = self.meta["series_normalization"][str(series)]
        view.meta = {**self.meta, "normalization": norm}
        view._norm = {k: np.asarray(v, np.float32) for k, v in norm.items()}
        view._scale, view._shift = self.series_normalization[str(series)][:2]
        view.series_normalization, view._step_session = {}, None
        view.safe_abs = view._safe_abs()
        return view

    def step_session(self):
        """A session of this model with normalization and the NaN/Inf check inside, or None (no onnx, or no
        model path to read)."""
        if self._step_session is None and self.model_path is not None:
            from lstm_onnx.runtimes.fold import fold_normalization
            from lstm_onnx.runtimes.session import open_session, settings_of

            raw = self.meta.get("normalization")
            blob = fold_normalization(self.model_path, raw, denormalize=self.head != "classify")
            if blob is not None:
                # Opened like the main session; the same graph, so its placement is already known.
                like = self.opened.settings if self.opened is not None else settings_of(self.session)
                self._step_session = open_session(blob, **{**like, "check_placement": False}).session
        return self._step_session


def _csv_columns(path) -> dict[str, list[str]]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [row for row in csv.reader(fh) if any(f.strip() for f in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PredictorError(f"cannot read {path}: {_first_line(exc)}") from None
    if not rows:
        raise PredictorError(f"{path} is empty: a header row and rows of history expected")
    header = [h.strip() for h in rows[0]]
    bad = next((k for k, row in enumerate(rows[1:], 2) if len(row) != len(header)), None)
    if bad is not None:
        raise PredictorError(f"{path} line {bad}: {len(rows[bad - 1])} fields, the header has {len(header)}")
    return {name: [row[k] for row in rows[1:]] for k, name in enumerate(header)}


class Stepper:
    """Carries h/c between calls: feeding a sequence in chunks equals one whole pass.

    The per-step path is kept short (a streaming step of a small model costs tens of microseconds): it runs
    the model with normalization and the NaN/Inf check folded into the graph (runtimes/fold.py), so no numpy
    call surrounds the run; `fold=False`, or no onnx package, does the same in numpy.
    """

    def __init__(self, predictor: Predictor, batch: int, fold: bool = True):
        self.p = predictor
        self.batch = batch
        self.h = predictor.zero_state(batch)
        self.c = np.zeros_like(self.h)
        self.steps = 0
        self._run = predictor.session.run
        self._names = ["y", "hn", "cn"]
        self._lengths: dict[int, np.ndarray] = {}
        session = predictor.step_session() if fold else None
        self._folded = session.run if session is not None else None
        self._folded_names = [RAW_Y, "hn", "cn", SUM]
        # Read once: the step below is a hot path.
        self._num_features, self._has_lengths = predictor.num_features, predictor.has_lengths
        self._time_major = not predictor.batch_first
        self._transpose_y = predictor.head == "sequence" and not predictor.batch_first

    def reset(self) -> None:
        self.h[...] = 0.0
        self.c[...] = 0.0
        self.steps = 0

    def step(self, x) -> np.ndarray:
        """x: one step [batch, F] or a chunk [batch, k, F] of raw features; returns y for that chunk."""
        if type(x) is not np.ndarray or x.dtype is not _FLOAT32:
            x = np.asarray(x, dtype=np.float32)
        if x.ndim == 2:
            x = x[:, None, :]
        shape = x.shape
        if len(shape) != 3 or shape[0] != self.batch or shape[2] != self._num_features or shape[1] == 0:
            self.p.check_input(x)  # raises, saying what was expected
            raise PredictorError(f"this stream carries state for batch {self.batch}, got batch {shape[0]}")
        if self._time_major:
            x = np.ascontiguousarray(x.transpose(1, 0, 2))
        if self._folded is not None:
            feeds = {RAW_X: x, "h0": self.h, "c0": self.c}
            if self._has_lengths:
                self._add_lengths(feeds, shape[1])
            try:
                y, h, c, total = self._folded(self._folded_names, feeds)
            except Exception as exc:  # onnxruntime's own types; `try` costs nothing until it raises
                raise self.p.refused(exc, shape) from None
            if not math.isfinite(total) and not np.isfinite(x).all():  # the sum may overflow legally
                raise PredictorError("input contains NaN or Inf")
        else:
            y, h, c = self._numpy_step(x, shape[1])
        self.h, self.c = h, c
        self.steps += shape[1]
        return y.transpose(1, 0, 2) if self._transpose_y else y

    def _numpy_step(self, x, k: int):
        """The same step without the folded graph: normalization and checks in numpy."""
        p = self.p
        xn = p.normalize(x)
        # One reduction instead of isfinite + all; a non-finite sum gets the exact check (overflow is legal).
        if not math.isfinite(xn.sum()) and not np.isfinite(x).all():
            raise PredictorError("input contains NaN or Inf")
        feeds = {"x": xn, "h0": self.h, "c0": self.c}
        if self._has_lengths:
            self._add_lengths(feeds, k)
        try:
            y, h, c = self._run(self._names, feeds)
        except Exception as exc:  # onnxruntime's own types
            raise p.refused(exc, (self.batch, k, self._num_features)) from None
        return p.denormalize(y), h, c

    def _add_lengths(self, feeds, k: int) -> None:
        if k not in self._lengths:
            self._lengths[k] = np.full(self.batch, k, np.int32)
        feeds["lengths"] = self._lengths[k]
