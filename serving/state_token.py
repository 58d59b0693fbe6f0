"""A stream's h/c as an opaque, tamper-evident token the client carries between steps (Ray Serve: no affinity).

token = urlsafe-base64(header | h | c | HMAC-SHA256(key, header | h | c)), header = (version, steps, L, H).
Any replica holding the deployment's key can check it and continue the stream; a changed byte fails the check.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import struct

import numpy as np

from lstm_onnx.serving.inputs import ApiError

_HEADER = struct.Struct("<BQHH")  # version, steps, L, H
_VERSION = 1
_MAC = hashlib.sha256().digest_size


def token_size(num_states: int, hidden: int) -> int:
    """Characters of a token for this model: the bound a server can check before decoding."""
    raw = _HEADER.size + 2 * 4 * num_states * hidden + _MAC
    return 4 * ((raw + 2) // 3)


def encode(key: bytes, h: np.ndarray, c: np.ndarray, steps: int) -> str:
    L, H = h.shape
    payload = (_HEADER.pack(_VERSION, steps, L, H) + np.ascontiguousarray(h, "<f4").tobytes()
               + np.ascontiguousarray(c, "<f4").tobytes())
    mac = hmac.new(key, payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(payload + mac).decode("ascii")


def _bad(why: str) -> ApiError:
    return ApiError(404, "unknown_session", f"session token refused: {why}",
                    "the session_id from POST /v1/sessions or from the last step's response, unchanged")


def decode(key: bytes, token: str, num_states: int, hidden: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(h [L, H], c [L, H], steps), or the ApiError saying why the token is refused."""
    if len(token) != token_size(num_states, hidden):
        raise _bad(f"{len(token)} characters, a token for this model has {token_size(num_states, hidden)}")
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise _bad("not base64") from None
    payload, mac = raw[:-_MAC], raw[-_MAC:]
    if not hmac.compare_digest(mac, hmac.new(key, payload, hashlib.sha256).digest()):
        raise _bad("signature does not match (changed, or from another deployment)")
    version, steps, L, H = _HEADER.unpack_from(payload)
    if version != _VERSION or (L, H) != (num_states, hidden):
        raise _bad(f"version {version} / state [{L}, {H}] is not this model's [{num_states}, {hidden}]")
    state = np.frombuffer(payload, "<f4", offset=_HEADER.size).astype(np.float32).reshape(2, L, H)
    return state[0].copy(), state[1].copy(), steps
