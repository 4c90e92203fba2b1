"""KeyService over a real keys file, the real audit table and a real SQLite store.

The file it writes is read back with the proxy's own reader (``spendgate_proxy.keys``), so a key
the collector creates is proven usable by a proxy, and the CLI's keys are proven visible here.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from spendgate_collector.audit import AuditLog
from spendgate_collector.keys.service import InvalidKeyRequest, KeyNotFound, KeyService, KeysNotConfigured
from spendgate_collector.records import SpendRecord
from spendgate_collector.store.sqlite import SQLiteStore
from spendgate_proxy.keys import KeyDirectory as ProxyKeyDirectory
from spendgate_proxy.keys import create_key as cli_create_key
from spendgate_proxy.keys import read_key_file


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditLog]:
    log = AuditLog(tmp_path / "spendgate.db")
    yield log
    log.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "spendgate.db")
    yield s
    s.close()


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "keys.yaml"


@pytest.fixture
def service(keys_file: Path, audit: AuditLog, store: SQLiteStore) -> KeyService:
    return KeyService(keys_file, audit=audit.add, last_used=store.key_last_used)


def _audit_text(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return "\n".join(repr(row) for row in conn.execute("SELECT * FROM audit"))


def _record(n: int, key_id: str | None, start_ns: int) -> SpendRecord:
    return SpendRecord(
        trace_id=f"{n:032x}", span_id=f"{n:016x}", start_ns=start_ns, end_ns=start_ns + 1000, model="m", key_id=key_id
    )


def test_created_key_authenticates_at_a_proxy_and_is_stored_only_hashed(
    service: KeyService, keys_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    expires = datetime.now(UTC) + timedelta(days=30)
    view, secret = service.create(
        actor="admin@acme.com",
        user="ana@acme.com",
        team="platform",
        cost_center="CC-1",
        repo="acme-api",
        models=("gpt-4o", "claude-sonnet-4-5"),
        expires_at=expires,
    )

    assert secret.startswith("sg-") and len(secret) == 46
    assert (view.user, view.team, view.cost_center, view.repo) == ("ana@acme.com", "platform", "CC-1", "acme-api")
    assert view.models == ("gpt-4o", "claude-sonnet-4-5")
    assert view.state() == "active"
    assert secret[:7] == view.prefix
    # The proxy's own reader finds the principal by the secret.
    principal = ProxyKeyDirectory(keys_file).lookup(secret)
    assert (view.key_id, "ana@acme.com", "platform") == (principal.key_id, principal.user, principal.team)
    assert principal.expires_at is not None and abs((principal.expires_at - expires).total_seconds()) < 1
    # Nowhere in clear: file, audit table, log lines, the view.
    assert secret not in keys_file.read_text()
    assert secret[3:] not in _audit_text(tmp_path / "spendgate.db")
    assert secret not in caplog.text
    assert secret not in repr(view) and secret not in str(view.to_dict())
    assert keys_file.stat().st_mode & 0o777 == 0o600


def test_every_change_is_audited_with_actor_and_principal_never_the_secret(
    service: KeyService, audit: AuditLog, tmp_path: Path
) -> None:
    view, secret = service.create(actor="lead@acme.com", user="bo@acme.com", team="data", cost_center=None, repo=None)
    service.revoke(view.key_id, actor="admin@acme.com")
    service.revoke(view.key_id, actor="admin@acme.com")  # already revoked: no second line

    entries = audit.read(action="key")
    assert [e["action"] for e in entries] == ["key.revoke", "key.create"]
    assert [e["actor"] for e in entries] == ["admin@acme.com", "lead@acme.com"]
    create = entries[1]["details"]
    assert (view.key_id, "bo@acme.com", "data") == (create["key_id"], create["user"], create["team"])
    text = _audit_text(tmp_path / "spendgate.db")
    assert secret[3:] not in text and "sha256:" not in text and secret[:7] not in text


def test_revoked_key_is_refused_by_the_proxy_and_kept_for_attribution(service: KeyService, keys_file: Path) -> None:
    view, secret = service.create(actor="a@x.io", user="ana@acme.com", team=None, cost_center=None, repo=None)

    revoked = service.revoke(view.key_id, actor="a@x.io")

    assert revoked.state() == "revoked" and revoked.revoked_at is not None
    with pytest.raises(LookupError, match="revoked"):
        ProxyKeyDirectory(keys_file).lookup(secret)
    assert [view.key_id] == [r.principal.key_id for r in read_key_file(keys_file)]


def test_keys_made_by_the_cli_are_listed_and_the_cli_reads_the_services_keys(
    service: KeyService, keys_file: Path
) -> None:
    cli_secret, cli_rec = cli_create_key(keys_file, user="cli@acme.com", team="platform")
    view, _ = service.create(actor="a@x.io", user="api@acme.com", team="platform", cost_center=None, repo=None)

    listed = service.list()

    assert [view.key_id, cli_rec.principal.key_id] == [v.key_id for v in listed]  # newest first
    assert cli_rec.prefix == listed[1].prefix
    assert {view.key_id, cli_rec.principal.key_id} == {r.principal.key_id for r in read_key_file(keys_file)}
    assert cli_secret not in str([v.to_dict() for v in listed])


def test_list_filters_by_user_case_insensitively_and_by_team(service: KeyService) -> None:
    a, _ = service.create(actor="x@x.io", user="Ana@Acme.com", team="platform", cost_center=None, repo=None)
    b, _ = service.create(actor="x@x.io", user="bo@acme.com", team="platform", cost_center=None, repo=None)
    c, _ = service.create(actor="x@x.io", user="ana@acme.com", team="data", cost_center=None, repo=None)

    assert {a.key_id, c.key_id} == {v.key_id for v in service.list(user="ana@ACME.com")}
    assert {a.key_id, b.key_id} == {v.key_id for v in service.list(team="platform")}
    assert [c.key_id] == [v.key_id for v in service.list(user="ana@acme.com", team="data")]
    assert service.list(team="nobody") == []


def test_last_used_is_the_latest_call_and_never_goes_back(service: KeyService, store: SQLiteStore) -> None:
    used, _ = service.create(actor="x@x.io", user="ana@acme.com", team=None, cost_center=None, repo=None)
    idle, _ = service.create(actor="x@x.io", user="bo@acme.com", team=None, cost_center=None, repo=None)
    t0 = 1_790_000_000_000_000_000
    store.write([_record(1, used.key_id, t0), _record(2, used.key_id, t0 + 5_000_000_000), _record(3, None, t0)])
    store.write([_record(4, used.key_id, t0 - 60_000_000_000)])  # a late, older batch

    views = {v.key_id: v for v in service.list()}

    assert datetime.fromtimestamp((t0 + 5_000_000_000) / 1e9, UTC) == views[used.key_id].last_used_at
    assert views[idle.key_id].last_used_at is None
    assert views[used.key_id].last_used_at == service.get(used.key_id).last_used_at


def test_last_used_is_written_at_most_once_a_minute_per_key(store: SQLiteStore) -> None:
    minute = 60_000_000_000
    t0 = 1_790_000_000_000_000_000 // minute * minute
    store.write([_record(1, "key_a", t0 + 1_000)])
    store.write([_record(2, "key_a", t0 + 30_000_000_000)])  # same minute: not written again
    assert store.key_last_used(["key_a"]) == {"key_a": t0 + 1_000}

    store.write([_record(3, "key_a", t0 + minute + 5)])  # the next minute is

    assert store.key_last_used(["key_a"]) == {"key_a": t0 + minute + 5}


def test_last_used_is_back_filled_from_spend_rows_of_an_older_database(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    store = SQLiteStore(db)
    t0 = 1_790_000_000_000_000_000
    store.write([_record(1, "key_a", t0), _record(2, "key_a", t0 + 7), _record(3, "key_b", t0 + 3)])
    store.close()
    with sqlite3.connect(db) as conn:  # as a database from before the table existed
        conn.execute("DROP TABLE key_last_used")
        # As written before the schema registry: user_version 1, whatever tables the file holds.
        conn.execute("PRAGMA user_version = 1")

    reopened = SQLiteStore(db)
    try:
        assert {"key_a": t0 + 7, "key_b": t0 + 3} == reopened.key_last_used()
        assert {"key_b": t0 + 3} == reopened.key_last_used(["key_b", "key_zzz"])
    finally:
        reopened.close()


def test_without_a_keys_file_every_call_says_how_to_configure_one(audit: AuditLog) -> None:
    service = KeyService(None, audit=audit.add)
    for call in (
        service.list,
        lambda: service.create(actor="a", user="a@b.c", team=None, cost_center=None, repo=None),
        lambda: service.revoke("key_1", actor="a"),
    ):
        with pytest.raises(KeysNotConfigured, match="keys_file"):
            call()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"user": "not-an-email"}, "user"),
        ({"user": ""}, "user"),
        ({"team": "a\nb"}, "team"),
        ({"repo": "r" * 201}, "repo"),
        ({"models": ("ok", 3)}, "models"),
        ({"expires_at": datetime.now(UTC) - timedelta(seconds=1)}, "expires_at"),
        ({"actor": " "}, "actor"),
    ],
)
def test_bad_create_requests_name_the_field(
    service: KeyService, keys_file: Path, kwargs: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {"actor": "a@x.io", "user": "ana@acme.com", "team": None, "cost_center": None}
    args["repo"] = None
    args.update(kwargs)
    with pytest.raises(InvalidKeyRequest) as info:
        service.create(**args)  # type: ignore[arg-type]
    assert field == info.value.field
    assert not keys_file.exists()


def test_revoking_an_unknown_key_is_not_found(service: KeyService) -> None:
    with pytest.raises(KeyNotFound, match="key_nope"):
        service.revoke("key_nope", actor="a@x.io")
    with pytest.raises(KeyNotFound):
        service.get("key_nope")


def test_a_create_whose_audit_line_fails_is_undone(keys_file: Path) -> None:
    def broken_audit(entries: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    service = KeyService(keys_file, audit=broken_audit)
    with pytest.raises(sqlite3.OperationalError):
        service.create(actor="a@x.io", user="ana@acme.com", team=None, cost_center=None, repo=None)
    assert read_key_file(keys_file) == []


def test_concurrent_creates_from_threads_and_the_cli_lose_nothing(service: KeyService, keys_file: Path) -> None:
    ids: list[str] = []

    def via_service(n: int) -> None:
        view, _ = service.create(actor="a@x.io", user=f"u{n}@acme.com", team=None, cost_center=None, repo=None)
        ids.append(view.key_id)

    def via_cli(n: int) -> None:
        ids.append(cli_create_key(keys_file, user=f"c{n}@acme.com")[1].principal.key_id)

    threads = [threading.Thread(target=via_service if n % 2 else via_cli, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(ids) == sorted(r.principal.key_id for r in read_key_file(keys_file))
    assert len(set(ids)) == 16


def test_fields_the_service_does_not_know_are_kept(service: KeyService, keys_file: Path) -> None:
    keys_file.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "owner": "platform-team",
                "keys": [{"id": "key_old", "hash": "sha256:" + "0" * 64, "user": "o@acme.com", "note": "laptop"}],
            }
        )
    )
    service.create(actor="a@x.io", user="ana@acme.com", team=None, cost_center=None, repo=None)

    doc = yaml.safe_load(keys_file.read_text())
    assert doc["owner"] == "platform-team"
    assert doc["keys"][0]["note"] == "laptop"
    assert len(doc["keys"]) == 2
