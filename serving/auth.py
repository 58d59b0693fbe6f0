"""The optional bearer token: with one set, every route but the health probes needs `Authorization: Bearer
<token>`, compared in constant time. The token comes from `serve --auth-token-file` or $LSTM_PIPELINE_TOKEN."""
from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from lstm_onnx.serving.inputs import ApiError

TOKEN_ENV = "LSTM_PIPELINE_TOKEN"
UNAUTHORIZED = ApiError(401, "unauthorized", "missing or wrong bearer token",
                        "an Authorization: Bearer <token> header with the token the server was started with",
                        {"WWW-Authenticate": "Bearer"})
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})  # probes: orchestrators call them without credentials


def check_token(token: str) -> None:
    """ValueError unless the token can travel in a header: printable ASCII without spaces."""
    if not token or not all("!" <= ch <= "~" for ch in token):
        raise ValueError("the auth token must be printable ASCII without spaces (e.g. `openssl rand -hex 32`)")


def token_from(path: str | None, environ=os.environ) -> str | None:
    """The token in `path` (surrounding whitespace dropped), else $LSTM_PIPELINE_TOKEN, else None; ValueError
    for an unreadable or empty file or variable."""
    if path is None:
        token, where = environ.get(TOKEN_ENV), f"${TOKEN_ENV}"
        if token is None:
            return None
    else:
        where = f"--auth-token-file {path}"
        try:
            token = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ValueError(f"cannot read {where}: {reason}") from None
    token = token.strip()
    if not token:
        raise ValueError(f"{where} is empty; put the token in it (e.g. `openssl rand -hex 32`)")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def exposure_warning(host: str, token: str | None) -> str | None:
    if token is None and not is_loopback(host):
        return (f"serving on {host} without a token: anyone who can reach it can use it; pass --auth-token-file "
                f"or set ${TOKEN_ENV}")
    return None


class BearerCheck:
    def __init__(self, token: str):
        self.expected = token.encode("ascii")

    def allows(self, scope) -> bool:
        if scope["path"] in OPEN_PATHS:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.expected)
        return False
