"""Bad input gets an OpenAI-style error naming the problem; nothing reaches the provider."""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from spendgate_proxy.keys import create_key, revoke_key
from tests.proxy.conftest import Gateway


def _post(
    gw: Gateway,
    body: object = None,
    *,
    key: str | None = "ana",
    raw: bytes | None = None,
    path: str = "/v1/chat/completions",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    hdrs = dict(headers or {})
    if key is not None:
        hdrs.setdefault("Authorization", f"Bearer {gw.keys.get(key + '@acme.com', key)}")
    if raw is not None:
        return httpx.post(gw.proxy.url + path, content=raw, headers={"Content-Type": "application/json", **hdrs})
    return httpx.post(gw.proxy.url + path, json=body, headers=hdrs)


def _error(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


def _upstream_calls(gw: Gateway) -> int:
    return len(httpx.get(gw.upstream.url + "/_sim/requests").json())


OK_BODY = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("raw", "code", "param"),
    [
        (b"{not json", "invalid_json", None),
        (b"", "invalid_json", None),
        (b"[1, 2]", "invalid_json", None),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "missing_required_parameter", "model"),
        (b'{"model": 42, "messages": []}', "missing_required_parameter", "model"),
        (b'{"model": "gpt-4.1"}', "missing_required_parameter", "messages"),
        (b'{"model": "gpt-4.1", "messages": []}', "missing_required_parameter", "messages"),
    ],
)
def test_malformed_bodies_are_400(gateway: Gateway, raw: bytes, code: str, param: str | None) -> None:
    before = _upstream_calls(gateway)
    err = _error(_post(gateway, raw=raw), 400)
    assert (err["code"], err["param"], err["type"]) == (code, param, "invalid_request_error")
    assert _upstream_calls(gateway) == before


def test_unknown_model_is_404_naming_it(gateway: Gateway) -> None:
    err = _error(_post(gateway, {**OK_BODY, "model": "gpt-9-ultra"}), 404)
    assert err["code"] == "model_not_found"
    assert "gpt-9-ultra" in err["message"]


def test_model_outside_key_allow_list_is_403(gateway: Gateway) -> None:
    key, _ = create_key(gateway.keys_file, user="eve@acme.com", models=("gpt-4.1-mini",))
    time.sleep(1.3)  # the proxy reloads the key file once a second
    err = _error(_post(gateway, OK_BODY, key=key), 403)
    assert err["code"] == "model_not_allowed"
    assert _post(gateway, {**OK_BODY, "model": "gpt-4.1-mini"}, key=key).status_code == 200


def test_oversized_body_is_413(gateway: Gateway) -> None:
    big = {**OK_BODY, "messages": [{"role": "user", "content": "x" * (33 * 1024 * 1024)}]}
    err = _error(_post(gateway, big), 413)
    assert err["code"] == "request_too_large"


def test_compressed_bodies_are_read_whole_and_size_checked_after_decompression(gateway: Gateway) -> None:
    # A small gzip body arrives with its head (the proxy takes it without awaiting); the limit
    # applies to what it decompresses to, not to its Content-Length.
    headers = {"Content-Encoding": "gzip"}
    ok = _post(gateway, raw=gzip.compress(json.dumps(OK_BODY).encode()), headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["object"] == "chat.completion"
    big = {**OK_BODY, "messages": [{"role": "user", "content": "x" * (33 * 1024 * 1024)}]}
    before = _upstream_calls(gateway)
    err = _error(_post(gateway, raw=gzip.compress(json.dumps(big).encode()), headers=headers), 413)
    assert err["code"] == "request_too_large"
    assert _upstream_calls(gateway) == before


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "Missing virtual key"),
        ({"Authorization": "Basic abc"}, "Malformed Authorization"),
        ({"Authorization": "Bearer sg-not-a-real-key"}, "unknown virtual key"),
    ],
)
def test_missing_or_unknown_key_is_401(gateway: Gateway, headers: dict[str, str], fragment: str) -> None:
    err = _error(_post(gateway, OK_BODY, key=None, headers=headers), 401)
    assert fragment in err["message"]
    assert err["type"] == "authentication_error"
    assert "sg-not-a-real-key" not in err["message"]  # keys are never echoed


def test_revoked_and_expired_keys_are_401_saying_which(gateway: Gateway) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    expired, _ = create_key(gateway.keys_file, user="old@acme.com", expires_at=past)
    revoke_key(gateway.keys_file, _key_id(gateway, "bo@acme.com"))
    time.sleep(1.3)
    assert "expired" in _error(_post(gateway, OK_BODY, key=expired), 401)["message"]
    assert "revoked" in _error(_post(gateway, OK_BODY, key="bo"), 401)["message"]
    assert _post(gateway, OK_BODY).status_code == 200  # others unaffected


def _key_id(gw: Gateway, user: str) -> str:
    from spendgate_proxy.keys import read_key_file

    return next(r.principal.key_id for r in read_key_file(gw.keys_file) if r.principal.user == user)


def test_bad_attribution_prefix_is_400(gateway: Gateway) -> None:
    err = _error(_post(gateway, OK_BODY, path="/t/rpo=x/v1/chat/completions"), 400)
    assert err["code"] == "invalid_attribution_prefix"
    assert "rpo=x" in err["message"]


def test_unknown_route_is_404_json(gateway: Gateway) -> None:
    err = _error(httpx.get(gateway.proxy.url + "/v1/embeddings"), 404)
    assert err["code"] == "unknown_route"


def test_cors_preflight_and_healthz(gateway: Gateway) -> None:
    pre = httpx.options(
        gateway.proxy.url + "/v1/chat/completions",
        headers={"Origin": "https://cursor.sh", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "*"
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    health = httpx.get(gateway.proxy.url + "/healthz").json()
    assert health["status"] == "ok"
    assert health["models"] == 4
    assert set(health["spans"]) == {"queued", "exported", "failed_attempts", "dropped"}


def test_models_without_v1_prefix_for_cursor_verify(gateway: Gateway) -> None:
    resp = httpx.get(gateway.proxy.url + "/models", headers={"Authorization": f"Bearer {gateway.keys['ana@acme.com']}"})
    assert resp.status_code == 200
    assert resp.json()["object"] == "list"
