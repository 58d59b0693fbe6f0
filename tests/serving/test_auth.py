"""The optional bearer token: every route but the probes needs it (the hot routes too), compared in constant
time; refusals are 401 in the JSON error shape with WWW-Authenticate; the token file and variable are checked."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from lstm_onnx.cli.main import cli
from lstm_onnx.serving import auth
from lstm_onnx.serving.app import create_app
from lstm_onnx.serving.settings import ServeSettings

TOKEN = "s3cret-token_0123456789"
GOOD = {"inputs": [[[1.0, 2.0, 3.0]]]}


@pytest.fixture(scope="module")
def app(serve_model):
    with TestClient(create_app(ServeSettings(model=str(serve_model), auth_token=TOKEN))) as c:
        c.sid = c.post("/v1/sessions", headers={"Authorization": f"Bearer {TOKEN}"}).json()["session_id"]
        yield c


def routes(sid):
    return [("POST", "/v1/predict", GOOD, 200), ("POST", f"/v1/sessions/{sid}/step", {"inputs": [[1.0, 2.0, 3.0]]}, 200),
            ("POST", "/v1/sessions", None, 201), ("GET", "/v1/model", None, 200), ("GET", "/metrics", None, 200),
            ("GET", "/openapi.json", None, 200), ("DELETE", "/v1/sessions/nope", None, 404),
            ("GET", "/nowhere", None, 404)]


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer ",
                                    f"Bearer {TOKEN[:-1]}"])
def test_every_route_but_the_probes_refuses_without_the_token(app, header):
    headers = {"Authorization": header} if header is not None else {}
    for method, path, body, _ in routes(app.sid):
        r = app.request(method, path, json=body, headers=headers)
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers["www-authenticate"] == "Bearer" and r.json()["error"]["code"] == "unauthorized"
    for path in ("/healthz", "/readyz"):
        assert app.get(path, headers=headers).status_code == 200


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_token_opens_every_route(app, scheme):
    for method, path, body, status in routes(app.sid):
        r = app.request(method, path, json=body, headers={"Authorization": f"{scheme} {TOKEN}"})
        assert r.status_code == status, (method, path, r.text)


def test_refusals_are_counted(app):
    app.get("/v1/model")
    text = app.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert 'lstm_rejected_total{reason="unauthorized"}' in text


def test_the_comparison_is_constant_time(app, monkeypatch):
    seen = []
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: seen.append((a, b)) or a == b)
    assert app.get("/v1/model", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert seen == [(b"nope", TOKEN.encode())]


def test_without_a_token_nothing_is_asked(serve_model):
    with TestClient(create_app(ServeSettings(model=str(serve_model)))) as c:
        assert c.post("/v1/predict", json=GOOD).status_code == 200


def test_the_token_file_wins_over_the_variable(tmp_path):
    f = tmp_path / "token"
    f.write_text(f"  {TOKEN}\n")
    assert auth.token_from(str(f), {auth.TOKEN_ENV: "other"}) == TOKEN
    assert auth.token_from(None, {auth.TOKEN_ENV: "other"}) == "other"
    assert auth.token_from(None, {}) is None


@pytest.mark.parametrize("content, words", [(b"", "is empty"), (b" \n\t", "is empty"), (b"\xff\xfe", "cannot read"),
                                            (None, "cannot read")])
def test_bad_token_files_are_one_line_errors(tmp_path, content, words):
    f = tmp_path / "token"
    if content is not None:
        f.write_bytes(content)
    r = CliRunner().invoke(cli, ["serve", "model.onnx", "--auth-token-file", str(f)])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output.startswith("Error: ") and words in r.output and r.output.count("\n") == 1, r.output


@pytest.mark.parametrize("env, words", [("", "is empty"), ("has space", "printable ASCII")])
def test_a_bad_token_variable_is_a_one_line_error(monkeypatch, env, words):
    monkeypatch.setenv(auth.TOKEN_ENV, env)
    r = CliRunner().invoke(cli, ["serve", "model.onnx"])
    assert r.exit_code == 1 and words in r.output and r.output.count("\n") == 1, r.output


def test_the_variable_reaches_the_settings(serve_model, monkeypatch):
    from lstm_onnx.serving import server

    seen = []
    monkeypatch.setattr(server, "serve", lambda settings: seen.append(settings))
    monkeypatch.setenv(auth.TOKEN_ENV, TOKEN)
    assert CliRunner().invoke(cli, ["serve", str(serve_model)]).exit_code == 0
    assert seen[0].auth_token == TOKEN and TOKEN not in repr(seen[0])


@pytest.mark.parametrize("host, token, warned", [("0.0.0.0", None, True), ("192.168.1.5", None, True),
                                                 ("myhost", None, True), ("0.0.0.0", TOKEN, False),
                                                 ("127.0.0.1", None, False), ("::1", None, False),
                                                 ("localhost", None, False)])
def test_serving_beyond_loopback_without_a_token_warns(serve_model, monkeypatch, capsys, host, token, warned):
    from lstm_onnx.serving import server

    monkeypatch.setattr("uvicorn.Server.run", lambda self, sockets=None: None)
    monkeypatch.setattr(server, "listen", lambda host, port: None)  # 192.168.1.5 and myhost are not this machine's
    server.serve(ServeSettings(model=str(serve_model), host=host, auth_token=token))
    err = capsys.readouterr().err
    assert ("WARNING" in err and f"serving on {host} without a token" in err) == warned, err
