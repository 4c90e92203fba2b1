"""The keys API over real HTTP: a real collector, its keys file, its control plane and a real proxy.

A key created through the API reaches a proxy over the control stream (the proxy's own key file is
empty, so nothing else could tell it) and authenticates there; once revoked, the proxy refuses it
with 401. A call through the proxy lands in the collector over OTLP and shows as the key's last use.

Who may do what is checked on an app serving the same ``KeysApi`` routes over real HTTP, behind a
small middleware that signs each request in as the identity a test header names, the way the auth
middleware does after OIDC sign-in.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from spendgate_collector.audit import AuditLog
from spendgate_collector.auth.identity import REQUEST_KEY, Identity, Role, allowed_roles
from spendgate_collector.keys.api import KeysApi
from spendgate_collector.keys.service import KeyService
from spendgate_collector.store.sqlite import SQLiteStore
from spendgate_proxy.app import create_app as create_proxy
from spendgate_proxy.config import load_config as load_proxy_config
from spendgate_proxy.keys import KeyDirectory as ProxyKeyDirectory
from spendgate_proxy.telemetry.spans import worker_from_settings
from spendgate_simulator import SimulatorConfig
from spendgate_simulator import create_app as create_simulator
from tests.collector.conftest import RunningCollector, run_collector
from tests.support.aio_server import ServerHandle, serve_app

ADMIN = Identity("admin-1", Role.ADMIN, email="root@acme.com")
ANA = Identity("ana-1", Role.DEVELOPER, email="ana@acme.com", teams=("platform", "infra"))
BO = Identity("bo-1", Role.DEVELOPER, email="bo@acme.com", teams=("data",))
LEAD = Identity("lead-1", Role.LEAD, email="lee@acme.com", teams=("platform",))
FINANCE = Identity("fin-1", Role.FINANCE, email="fin@acme.com")
NO_EMAIL = Identity("svc-1", Role.DEVELOPER)
IDENTITIES = {i.subject: i for i in (ADMIN, ANA, BO, LEAD, FINANCE, NO_EMAIL)}


def _wait(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` until true; the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


# --- end to end: collector + control plane + proxy


@pytest.fixture
def simulator() -> Iterator[ServerHandle]:
    with serve_app(lambda: create_simulator(SimulatorConfig(chunks=2))) as sim:
        yield sim


@pytest.fixture
def stack(tmp_path: Path, simulator: ServerHandle) -> Iterator[tuple[RunningCollector, ServerHandle]]:
    with run_collector(
        tmp_path, keys_file=tmp_path / "keys.yaml", proxy_public_url="https://gw.acme.dev/", control_heartbeat_s=1
    ) as collector:
        proxy_settings = load_proxy_config(
            overrides={
                # Not the collector's file: this proxy can only learn keys from the control stream.
                "keys_file": str(tmp_path / "proxy-own-keys.yaml"),
                "providers": {"sim": {"base_url": simulator.url + "/v1", "api_key_env": "SIM_KEY"}},
                "models": [{"name": "gpt-4.1", "provider": "sim"}],
                "telemetry": {"endpoint": "http://" + collector.grpc_endpoint, "export_interval_s": 0.1},
                "control": {"endpoint": collector.collector.control_endpoint, "heartbeat_timeout_s": 3},
            },
            env={"SIM_KEY": "sk-sim-provider"},
        )
        worker = worker_from_settings(proxy_settings.telemetry)
        with serve_app(lambda: create_proxy(proxy_settings, keys=ProxyKeyDirectory(None), worker=worker)) as proxy:
            _wait(
                lambda: httpx.get(proxy.url + "/healthz").json()["control"]["ready"], 15, "the first control snapshot"
            )
            yield collector, proxy


def _models(proxy: ServerHandle, secret: str) -> httpx.Response:
    return httpx.get(proxy.url + "/cursor/v1/models", headers={"Authorization": f"Bearer {secret}"})


def test_key_created_over_the_api_works_at_a_proxy_and_is_refused_once_revoked(
    stack: tuple[RunningCollector, ServerHandle], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    collector, proxy = stack
    api = collector.api_url

    resp = httpx.post(
        api + "/api/keys",
        json={"user": "ana@acme.com", "team": "platform", "cost_center": "CC-1", "repo": "acme-api"},
        headers={"X-Spendgate-Actor": "ops@acme.com"},
    )

    assert resp.status_code == 201, resp.text
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    secret, key = body["secret"], body["key"]
    assert secret.startswith("sg-")
    assert (key["user"], key["team"], key["repo"], key["state"]) == ("ana@acme.com", "platform", "acme-api", "active")
    assert body["setup"]["base_url"] == "https://gw.acme.dev/cursor/v1"
    assert "Override OpenAI Base URL: https://gw.acme.dev/cursor/v1" in body["setup"]["cursor_steps"]
    # The proxy learns the key over the control stream.
    took = _wait(lambda: _models(proxy, secret).status_code == 200, 5, "the proxy to accept the new key")
    print(f"new key usable at the proxy after {took:.2f}s")

    # A call through the proxy is stored by the collector and becomes the key's last use.
    chat = httpx.post(
        proxy.url + "/v1/chat/completions",
        json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )
    assert chat.status_code == 200, chat.text

    def last_used() -> str | None:
        listed = httpx.get(api + "/api/keys", params={"user": "ana@acme.com"}).json()["keys"]
        return listed[0]["last_used_at"]

    _wait(lambda: last_used() is not None, 10, "the call to show as the key's last use")
    used_at = datetime.fromisoformat(last_used() or "")
    assert abs((datetime.now(UTC) - used_at).total_seconds()) < 30

    revoked = httpx.post(f"{api}/api/keys/{key['key_id']}/revoke", headers={"X-Spendgate-Actor": "ops@acme.com"})
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["key"]["state"] == "revoked"
    took = _wait(lambda: _models(proxy, secret).status_code == 401, 5, "the proxy to refuse the revoked key")
    print(f"revoked key refused at the proxy after {took:.2f}s")
    assert "revoked" in _models(proxy, secret).json()["error"]["message"]

    audit = httpx.get(api + "/api/audit", params={"action": "key"}).json()["entries"]
    assert [(e["action"], e["actor"], e["details"]["key_id"]) for e in audit] == [
        ("key.revoke", "ops@acme.com", key["key_id"]),
        ("key.create", "ops@acme.com", key["key_id"]),
    ]
    # The key appears nowhere but in the one answer that created it.
    listing = httpx.get(api + "/api/keys").text
    with sqlite3.connect(collector.collector.config.db) as conn:
        audit_rows = repr(conn.execute("SELECT * FROM audit").fetchall())
    for text in (listing, audit_rows, caplog.text, (collector.collector.config.keys_file or Path()).read_text()):
        assert secret[3:] not in text


def test_without_a_keys_file_the_api_says_which_setting_is_missing(tmp_path: Path) -> None:
    with run_collector(tmp_path) as collector:
        listed = httpx.get(collector.api_url + "/api/keys")
        created = httpx.post(collector.api_url + "/api/keys", json={"user": "ana@acme.com"})

    assert (listed.status_code, created.status_code) == (503, 503)
    assert "keys_file" in listed.json()["error"]


def test_setup_without_a_public_proxy_url_says_to_ask_for_it(tmp_path: Path) -> None:
    with run_collector(tmp_path, keys_file=tmp_path / "keys.yaml") as collector:
        body = httpx.post(collector.api_url + "/api/keys", json={"user": "ana@acme.com"}).json()

    assert body["setup"]["base_url"] is None
    assert any("ask your platform team" in step for step in body["setup"]["cursor_steps"])


# --- who may do what


@pytest.fixture
def keys_app(tmp_path: Path) -> Iterator[tuple[ServerHandle, KeyService]]:
    audit = AuditLog(tmp_path / "spendgate.db")
    store = SQLiteStore(tmp_path / "spendgate.db")
    service = KeyService(tmp_path / "keys.yaml", audit=audit.add, last_used=store.key_last_used, self_serve_max_days=30)
    executor = ThreadPoolExecutor(2)

    @web.middleware
    async def sign_in(request: web.Request, handler: Any) -> web.StreamResponse:
        who = request.headers.get("X-Test-Identity")
        if who:
            request[REQUEST_KEY] = IDENTITIES[who]
        return await handler(request)

    def make() -> web.Application:
        app = web.Application(middlewares=[sign_in])
        KeysApi(service, executor, proxy_public_url="https://gw.acme.dev").add_routes(app)
        return app

    with serve_app(make) as srv:
        yield srv, service
    executor.shutdown()
    store.close()
    audit.close()


def _as(srv: ServerHandle, who: Identity, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"X-Test-Identity": who.subject, **kwargs.pop("headers", {})}
    return httpx.request(method, srv.url + path, headers=headers, **kwargs)


def test_every_handler_is_marked_and_finance_is_never_allowed() -> None:
    api = KeysApi(KeyService(None, audit=lambda entries: None))
    for handler in (api.list_keys, api.create_key, api.revoke_key):
        assert allowed_roles(handler) == frozenset({Role.ADMIN, Role.LEAD, Role.DEVELOPER})


def test_a_developer_key_is_bound_to_their_claims_whatever_the_body_says(
    keys_app: tuple[ServerHandle, KeyService],
) -> None:
    srv, service = keys_app
    resp = _as(
        srv,
        ANA,
        "POST",
        "/api/keys",
        json={"user": "ceo@acme.com", "team": "finance", "cost_center": "CC-9", "repo": "acme-web"},
    )

    assert resp.status_code == 201, resp.text
    key = resp.json()["key"]
    assert (key["user"], key["team"], key["cost_center"], key["repo"]) == ("ana@acme.com", "platform", None, "acme-web")
    expires = datetime.fromisoformat(key["expires_at"])
    assert timedelta(days=29, hours=23) < expires - datetime.now(UTC) <= timedelta(days=30)
    assert service.list(user="ceo@acme.com") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expires_in_days": 31}, "expires_at"),
        ({"expires_at": (datetime.now(UTC) + timedelta(days=40)).isoformat()}, "expires_at"),
        ({"expires_at": "next tuesday"}, "expires_at"),
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"models": "gpt-4.1"}, "models"),
        ({"repo": 7}, "repo"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_self_serve_requests_name_the_field(
    keys_app: tuple[ServerHandle, KeyService], body: dict[str, Any], field: str
) -> None:
    srv, service = keys_app
    resp = _as(srv, ANA, "POST", "/api/keys", json=body)

    assert resp.status_code == 400
    assert resp.json()["field"] == field
    assert service.list() == []


def test_an_admin_creates_for_anyone_and_must_say_who(keys_app: tuple[ServerHandle, KeyService]) -> None:
    srv, _ = keys_app
    missing = _as(srv, ADMIN, "POST", "/api/keys", json={"team": "data"})
    made = _as(srv, ADMIN, "POST", "/api/keys", json={"user": "bo@acme.com", "team": "data", "expires_in_days": 365})

    assert (missing.status_code, missing.json()["field"]) == (400, "user")
    assert made.status_code == 201
    assert (made.json()["key"]["user"], made.json()["key"]["team"]) == ("bo@acme.com", "data")


def test_lists_are_each_roles_slice(keys_app: tuple[ServerHandle, KeyService]) -> None:
    srv, service = keys_app
    ana = service.create(actor="t", user="ana@acme.com", team="platform", cost_center=None, repo=None)[0]
    bo = service.create(actor="t", user="bo@acme.com", team="data", cost_center=None, repo=None)[0]
    lee = service.create(actor="t", user="lee@acme.com", team="platform", cost_center=None, repo=None)[0]

    def ids(who: Identity, **params: str) -> set[str] | int:
        resp = _as(srv, who, "GET", "/api/keys", params=params)
        return {k["key_id"] for k in resp.json()["keys"]} if resp.status_code == 200 else resp.status_code

    assert ids(ADMIN) == {ana.key_id, bo.key_id, lee.key_id}
    assert ids(ADMIN, team="data") == {bo.key_id}
    assert ids(ANA) == {ana.key_id}
    assert ids(ANA, user="bo@acme.com") == 403
    assert ids(LEAD) == {ana.key_id, lee.key_id}
    assert ids(LEAD, team="data") == 403
    assert ids(FINANCE) == 403
    assert ids(NO_EMAIL) == 403
    assert ids(ADMIN, colour="blue") == 400


def test_only_admins_revoke_other_peoples_keys(keys_app: tuple[ServerHandle, KeyService]) -> None:
    srv, service = keys_app
    ana = service.create(actor="t", user="ana@acme.com", team="platform", cost_center=None, repo=None)[0]
    bo = service.create(actor="t", user="bo@acme.com", team="data", cost_center=None, repo=None)[0]

    assert _as(srv, ANA, "POST", f"/api/keys/{bo.key_id}/revoke").status_code == 403
    assert _as(srv, LEAD, "POST", f"/api/keys/{ana.key_id}/revoke").status_code == 403
    assert _as(srv, FINANCE, "POST", f"/api/keys/{ana.key_id}/revoke").status_code == 403
    assert _as(srv, ANA, "POST", "/api/keys/key_nope/revoke").status_code == 404
    assert service.get(bo.key_id).state() == "active"

    own = _as(srv, ANA, "POST", f"/api/keys/{ana.key_id}/revoke")
    other = _as(srv, ADMIN, "POST", f"/api/keys/{bo.key_id}/revoke")

    assert (own.status_code, other.status_code) == (200, 200)
    assert {v.key_id: v.state() for v in service.list()} == {ana.key_id: "revoked", bo.key_id: "revoked"}


def test_finance_cannot_create_and_signed_in_actors_cannot_be_renamed(
    keys_app: tuple[ServerHandle, KeyService], tmp_path: Path
) -> None:
    srv, service = keys_app
    refused = _as(srv, FINANCE, "POST", "/api/keys", json={"user": "fin@acme.com"})
    made = httpx.post(
        srv.url + "/api/keys", headers={"X-Test-Identity": BO.subject, "X-Spendgate-Actor": "someone-else"}, json={}
    )

    assert refused.status_code == 403
    assert made.status_code == 201
    audit = AuditLog(tmp_path / "spendgate.db")
    try:
        assert [e["actor"] for e in audit.read(action="key")] == ["bo@acme.com"]
    finally:
        audit.close()
    assert [v.user for v in service.list()] == ["bo@acme.com"]


def test_bad_json_is_a_400_naming_the_body(keys_app: tuple[ServerHandle, KeyService]) -> None:
    srv, _ = keys_app
    resp = _as(srv, ADMIN, "POST", "/api/keys", content=b"{nope", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["field"] == "(body)"


def test_a_key_created_over_the_api_works_at_a_proxy_on_its_first_call(
    stack: tuple[RunningCollector, ServerHandle],
) -> None:
    collector, proxy = stack
    for i in range(3):
        resp = httpx.post(collector.api_url + "/api/keys", json={"user": f"dev{i}@acme.com"})
        assert resp.status_code == 201, resp.text
        # At once, no polling: the proxy asks the collector (SyncKeys) before it would answer 401.
        assert _models(proxy, resp.json()["secret"]).status_code == 200
    assert _models(proxy, "sg-never-issued").status_code == 401
    # How many of the three the collector's own poll delivered first depends on timing; the unknown
    # key always asked.
    health = httpx.get(proxy.url + "/healthz").json()["key_rechecks"]
    assert health["sync_failures"] == 0
    assert collector.collector.control.stats()["key_syncs"] >= 1
