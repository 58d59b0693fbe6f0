"""Triton python-backend model: an exported model under onnxruntime, raw features in, raw targets out.

serving/triton_python_repo.py copies this file to <repo>/<name>/1/model.py next to model.onnx. It runs in the
python backend's stub, so it imports only triton_python_backend_utils, numpy and onnxruntime (no lstm_onnx):
the normalization comes from the model's metadata, as runtimes/embed.py's Predictor reads it.

Triton hands execute() every request of a formed batch, each with its own tensors (x [n, S, F], optional
lengths [n, 1]). They run as one onnxruntime call where the shapes allow: all at once, padded, when the model
has a `lengths` input; otherwise one call per sequence length. With streams (sequence batching), h/c are kept
here per correlation id: zeroed on START, carried between requests, dropped on END.
"""
import json
import os
from collections import OrderedDict

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

PREFIX = "lstm_onnx."


class BadRequest(ValueError):
    """One request's input is unusable; it gets this message as its error, the others still run."""


class Item:
    """One request: normalized x [n, S, F], valid steps per row, and for a stream its id and controls."""

    def __init__(self, index, x, lengths, explicit_lengths):
        self.index, self.x, self.lengths, self.explicit_lengths = index, x, lengths, explicit_lengths
        self.stream, self.start, self.end = None, False, False


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU":
            device = int(args.get("model_instance_device_id", 0))
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device}))
        self.session = ort.InferenceSession(path, options, providers=providers)
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.has_lengths = "lengths" in inputs
        self.streams = params.get("streams") == "true"
        self.model_stateful = "h0" in inputs
        if self.model_stateful:
            self.num_states, _, self.hidden = inputs["h0"].shape
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._read_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.states = OrderedDict()  # correlation id -> (h [L, H], c [L, H]), least recently used first
        # Triton keeps at most max_candidate_sequences live per instance; an id it released for idling without
        # an END would stay here forever, so beyond a margin over that the least recently used are dropped (a
        # dropped live stream would get "not started", never a wrong answer).
        oldest = config.get("sequence_batching", {}).get("oldest", {})
        self.max_streams = 4 * int(oldest.get("max_candidate_sequences", 0) or 1024)

    def _read_metadata(self, props):
        model = json.loads(props.get(PREFIX + "config", "{}")).get("model", {})
        self.batch_first = bool(model.get("batch_first", True))
        self.head = model.get("head", "last")
        norm = json.loads(props.get(PREFIX + "normalization", "null"))
        self.scale = self.shift = None
        if norm:
            # The same multiply-add as Predictor.normalize, so results match it bit for bit.
            self.scale = (1.0 / np.asarray(norm["input_std"], np.float32)).astype(np.float32)
            self.shift = (-np.asarray(norm["input_mean"], np.float32) * self.scale).astype(np.float32)
            self.target_std = np.asarray(norm["target_std"], np.float32)
            self.target_mean = np.asarray(norm["target_mean"], np.float32)
        self.denormalize = bool(norm) and self.head != "classify"

    def execute(self, requests):
        responses = [None] * len(requests)
        items = []
        for k, request in enumerate(requests):
            try:
                items.append(self._parse(k, request))
            except BadRequest as exc:
                responses[k] = _error(str(exc))
                if self.streams and (_control(request, "START") or _control(request, "END")):
                    self.states.pop(int(_control(request, "CORRID")), None)  # Triton starts or ends it anyway
        for round_items in _rounds(items):
            self._run_round(round_items, responses)
        return responses

    # -- requests
    def _parse(self, index, request):
        x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy().astype(np.float32, copy=False)
        n, seq = x.shape[0], x.shape[1]
        if seq == 0:
            raise BadRequest("x has no steps: send at least one")
        lengths = np.full(n, seq, np.int32)
        given = pb_utils.get_input_tensor_by_name(request, "lengths") if self.has_lengths else None
        if given is not None:
            lengths = given.as_numpy().reshape(-1).astype(np.int32)
            if len(lengths) != n or lengths.min() < 1 or lengths.max() > seq:
                raise BadRequest(f"lengths must be {n} integers in 1..{seq}, got {lengths.tolist()}")
        with np.errstate(over="ignore", invalid="ignore"):
            xn = x * self.scale + self.shift if self.scale is not None else x
        if not np.isfinite(xn).all():
            raise BadRequest("x contains NaN or Inf, or values that overflow float32 once normalized by the "
                             "model's training statistics")
        item = Item(index, xn, lengths, explicit_lengths=given is not None)
        if self.streams:
            if n != 1:
                raise BadRequest(f"a stream takes one sequence per request (x batch 1), got {n}")
            item.stream = int(_control(request, "CORRID"))
            item.start, item.end = bool(_control(request, "START")), bool(_control(request, "END"))
        return item

    # -- running
    def _run_round(self, items, responses):
        """Items of distinct streams (or stateless ones), in as few onnxruntime calls as the model allows."""
        ready = []
        for item in items:
            if item.stream is not None and not item.start and item.stream not in self.states:
                responses[item.index] = _error(f"sequence {item.stream} was not started: send sequence_start")
            else:
                ready.append(item)
        if self.has_lengths:
            groups = [ready] if ready else []
        else:
            by_len = {}
            for item in ready:
                by_len.setdefault(item.x.shape[1], []).append(item)
            groups = list(by_len.values())
        for group in groups:
            try:
                outputs = self._run_group(group)
            except Exception as exc:  # onnxruntime's own types
                line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                outputs = [_error(f"onnxruntime refused the batch: {line}")] * len(group)
            for item, response in zip(group, outputs):
                responses[item.index] = response

    def _run_group(self, group):
        seq = max(item.x.shape[1] for item in group)
        rows = sum(item.x.shape[0] for item in group)
        x = np.zeros((rows, seq, group[0].x.shape[2]), np.float32)
        lengths = np.empty(rows, np.int32)
        row = 0
        for item in group:
            n, s = item.x.shape[:2]
            x[row:row + n, :s] = item.x
            lengths[row:row + n] = item.lengths
            row += n
        feeds = {"x": x if self.batch_first else np.ascontiguousarray(x.transpose(1, 0, 2))}
        if self.has_lengths:
            feeds["lengths"] = lengths
        if self.model_stateful:
            feeds["h0"], feeds["c0"] = self._initial_states(group, rows)
        out = dict(zip(self.output_names, self.session.run(self.output_names, feeds)))
        return self._responses(group, out)

    def _initial_states(self, group, rows):
        h = np.zeros((self.num_states, rows, self.hidden), np.float32)
        c = np.zeros_like(h)
        row = 0
        for item in group:
            state = None if item.stream is None or item.start else self.states[item.stream]
            if state is not None:
                h[:, row], c[:, row] = state
            row += item.x.shape[0]
        return h, c

    def _responses(self, group, out):
        y = out["y"]
        if self.head == "sequence" and not self.batch_first:
            y = y.transpose(1, 0, 2)
        if self.denormalize:
            y = y * self.target_std + self.target_mean
        responses, row = [], 0
        for item in group:
            n, s = item.x.shape[:2]
            part = y[row:row + n]
            if self.head == "sequence":
                part = np.ascontiguousarray(part[:, :s])
                if item.explicit_lengths:  # as Predictor.predict: y past an item's length is 0
                    part[np.arange(s)[None, :] >= item.lengths[:, None]] = 0.0
            if item.stream is not None:
                if item.end:
                    self.states.pop(item.stream, None)
                else:
                    self.states[item.stream] = (out["hn"][:, row].copy(), out["cn"][:, row].copy())
                    self.states.move_to_end(item.stream)
                    while len(self.states) > self.max_streams:
                        self.states.popitem(last=False)
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("y", np.ascontiguousarray(part, np.float32))]))
            row += n
        return responses

    def finalize(self):
        self.states.clear()


def _control(request, name):
    return pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)[0]


def _error(message):
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))


def _rounds(items):
    """Split items so that no stream appears twice in one round; rounds run in order, so a stream's
    requests run one after another. Stateless items all fit the first round."""
    rounds = []
    for item in items:
        for members, streams in rounds:
            if item.stream is None or item.stream not in streams:
                members.append(item)
                streams.add(item.stream)
                break
        else:
            rounds.append(([item], {item.stream}))
    return [members for members, _ in rounds]
