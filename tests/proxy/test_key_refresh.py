"""``KeyRefresh`` and the unknown-key cache: a new key works on its first call, a flood of bad keys costs nothing.

The clock and the sleep are fakes, so "at most one look per TTL" is counted, never timed.
"""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from spendgate_proxy.key_refresh import KeyRefresh
from spendgate_proxy.keys import (
    UNKNOWN_CACHE_SIZE,
    KeyDirectory,
    KeyRecord,
    Principal,
    UnknownKey,
    create_key,
    hash_key,
    revoke_key,
)
from tests.control.support import free_port
from tests.proxy.conftest import Gateway, start_gateway
from tests.support.aio_server import ServerHandle


class FakeClock:
    """A monotonic clock the test moves; ``sleep`` moves it too (and yields to the loop once)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def _bump(path: Path) -> None:
    """Make sure a rewrite shows in the file's stamp whatever the file system's mtime resolution."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_a_key_added_to_the_file_works_on_its_first_call(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    create_key(path, user="ana@acme.com")
    keys = KeyDirectory(path)
    new_key, _ = create_key(path, user="bo@acme.com")  # after the directory read the file
    _bump(path)
    with pytest.raises(UnknownKey) as exc:
        keys.lookup(new_key)
    assert not exc.value.checked
    refresh = KeyRefresh(keys)

    assert "bo@acme.com" == asyncio.run(refresh.lookup(new_key)).user
    assert (1, 1, 1) == (refresh.rechecks, refresh.found, refresh.reloads)
    assert "bo@acme.com" == keys.lookup(new_key).user  # and from now on without a second look


def test_a_flood_of_bad_keys_never_rereads_an_unchanged_file_and_one_bad_key_is_remembered(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    create_key(path, user="ana@acme.com")
    clock = FakeClock()
    keys = KeyDirectory(path, clock=clock)
    refresh = KeyRefresh(keys, clock=clock, sleep=clock.sleep)

    async def flood() -> None:
        for i in range(200):
            assert None is await refresh.lookup(f"sg-bad-{i}")

    asyncio.run(flood())
    assert (200, 0, 0) == (refresh.rechecks, refresh.found, refresh.reloads)  # a stat each, no read
    assert 200 == keys.unknown_cached

    # The same bad key again is answered from the cache, before it is hashed, until the TTL passes.
    with pytest.raises(UnknownKey) as exc:
        keys.lookup("sg-bad-7")
    assert exc.value.checked
    clock.now += refresh.ttl_s
    with pytest.raises(UnknownKey) as exc:
        keys.lookup("sg-bad-7")
    assert not exc.value.checked


def test_the_unknown_key_cache_is_bounded_and_forgotten_when_the_directory_changes(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    key, rec = create_key(path, user="ana@acme.com")
    keys = KeyDirectory(path)
    for i in range(UNKNOWN_CACHE_SIZE + 10):
        keys.remember_unknown(f"sg-bad-{i}", 60)
    assert UNKNOWN_CACHE_SIZE == keys.unknown_cached
    keys.remember_unknown("sg-" + "x" * 500, 60)  # too long to be a key: never kept
    assert UNKNOWN_CACHE_SIZE == keys.unknown_cached
    with pytest.raises(UnknownKey) as exc:
        keys.lookup("sg-bad-0")  # the oldest went first
    assert not exc.value.checked

    # A reload forgets the cache (here: a revocation), and so does every control-plane change.
    generation = keys.generation
    revoke_key(path, rec.principal.key_id)
    _bump(path)
    assert keys.reload_if_changed()
    assert (0, generation + 1) == (keys.unknown_cached, keys.generation)
    with pytest.raises(LookupError, match="revoked"):
        keys.lookup(key)
    keys.remember_unknown("sg-later", 60)
    keys.upsert([KeyRecord(Principal("key_l", "l@acme.com"), hash_key("sg-later"), "sg-lat")])
    assert "l@acme.com" == keys.lookup("sg-later").user


class FakeCollector:
    """Stands in for ``ControlClient.sync_keys``: counts the calls, and may add a key as the collector would."""

    def __init__(self, keys: KeyDirectory) -> None:
        self.keys = keys
        self.calls = 0
        self.adds: list[str] = []

    async def sync(self) -> bool:
        self.calls += 1
        for key in self.adds:
            self.keys.upsert([KeyRecord(Principal(f"key_{key[-4:]}", "new@acme.com"), hash_key(key), key[:7])])
        self.adds.clear()
        await asyncio.sleep(0)
        return True


def _managed() -> KeyDirectory:
    keys = KeyDirectory()
    keys.replace([KeyRecord(Principal("key_a", "ana@acme.com"), hash_key("sg-ana"), "sg-ana")])
    return keys


def test_with_a_collector_a_flood_of_bad_keys_asks_it_at_most_once_per_ttl() -> None:
    clock = FakeClock()
    keys = _managed()
    collector = FakeCollector(keys)
    refresh = KeyRefresh(keys, sync=collector.sync, clock=clock, sleep=clock.sleep)

    async def flood() -> None:
        # 500 distinct bad keys at once: all wait for one call.
        results = await asyncio.gather(*(refresh.lookup(f"sg-bad-{i}") for i in range(500)))
        assert [None] * 500 == results
        assert 1 == collector.calls
        # 500 more within the same TTL: they wait for the next slot (one more call, not 500).
        results = await asyncio.gather(*(refresh.lookup(f"sg-worse-{i}") for i in range(500)))
        assert [None] * 500 == results
        assert 2 == collector.calls
        assert [refresh.ttl_s] == clock.slept  # the second call waited for the end of the first's TTL

    asyncio.run(flood())
    assert 1000 == refresh.rechecks
    # Calls per TTL: clock.now only moved by the one wait, so two calls spanned one TTL.
    assert clock.now - 1000.0 == refresh.ttl_s


def test_with_a_collector_a_key_created_just_after_a_flood_still_works_on_its_first_call() -> None:
    clock = FakeClock()
    keys = _managed()
    collector = FakeCollector(keys)
    refresh = KeyRefresh(keys, sync=collector.sync, clock=clock, sleep=clock.sleep)

    async def scenario() -> None:
        assert None is await refresh.lookup("sg-bad")  # asks the collector: nothing new
        collector.adds.append("sg-brand-new-key")  # created now, after that call
        with pytest.raises(UnknownKey):
            keys.lookup("sg-brand-new-key")
        principal = await refresh.lookup("sg-brand-new-key")  # waits for a call that starts after it
        assert "new@acme.com" == principal.user

    asyncio.run(scenario())
    assert (2, 1) == (collector.calls, refresh.found)


def test_with_a_collector_the_proxys_own_file_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    stale_copy_key, _ = create_key(path, user="gone@acme.com")
    keys = KeyDirectory(path)
    keys.replace([])  # the collector's directory: this key is not in it
    _bump(path)
    calls = []

    async def sync() -> None:
        calls.append(1)

    refresh = KeyRefresh(keys, sync=sync)
    assert None is asyncio.run(refresh.lookup(stale_copy_key))
    assert ([1], 0) == (calls, refresh.reloads)


def test_an_unreachable_collector_answers_from_what_is_held() -> None:
    keys = _managed()

    async def sync() -> None:
        raise ConnectionError("collector down")

    refresh = KeyRefresh(keys, sync=sync)
    assert None is asyncio.run(refresh.lookup("sg-nope"))
    assert (1, 1) == (refresh.syncs, refresh.sync_failures)
    assert "ConnectionError: collector down" == refresh.last_error
    assert "ana@acme.com" == keys.lookup("sg-ana").user  # what is held still serves


def test_the_stats_never_hold_a_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    key, _ = create_key(path, user="ana@acme.com")
    keys = KeyDirectory(path)
    refresh = KeyRefresh(keys)
    assert None is asyncio.run(refresh.lookup("sg-secret-but-wrong"))
    text = str(refresh.stats())
    assert "sg-" not in text and key not in text


# --- through a real proxy: every route gets the second look; the collector unreachable or present

BODY = {"model": "gpt-4.1-mini", "stream": True, "messages": [{"role": "user", "content": "hello"}]}


def _chat(url: str, key: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_a_key_written_to_the_file_works_on_its_first_call_on_every_route(
    tmp_path: Path, simulator: ServerHandle
) -> None:
    for gw in start_gateway(tmp_path, simulator):

        def new_key(user: str, keys_file: Path = gw.keys_file) -> dict[str, str]:
            key, _ = create_key(keys_file, user=user)  # the proxy's once-a-second reload is behind
            return {"Authorization": f"Bearer {key}"}

        url = gw.proxy.url
        assert 200 == httpx.post(url + "/v1/chat/completions", json=BODY, headers=new_key("c@acme.com")).status_code
        assert 200 == httpx.get(url + "/v1/models", headers=new_key("m@acme.com")).status_code
        cursor = httpx.post(url + "/cursor/v1/chat/completions", json=BODY, headers=new_key("u@acme.com"))
        assert 200 == cursor.status_code
        messages = {"model": "gpt-4.1-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
        assert 200 == httpx.post(url + "/v1/messages", json=messages, headers=new_key("a@acme.com")).status_code
        hook = httpx.post(url + "/hooks/cursor", json={}, headers=new_key("h@acme.com"))
        assert 401 != hook.status_code  # authenticated; the empty report itself is what is refused
        # A bad key still gets the same 401, and is then remembered.
        bad = _chat(gw.proxy.url, "sg-not-a-key")
        assert (401, "invalid_api_key") == (bad.status_code, bad.json()["error"]["code"])
        assert "Invalid virtual key: unknown virtual key." == bad.json()["error"]["message"]
        health = httpx.get(gw.proxy.url + "/healthz").json()
        assert 5 == health["key_rechecks"]["found"]
        assert health["key_rechecks"]["unknown_cached"] >= 1
        assert "sg-" not in str(health)


def test_an_unreachable_default_collector_leaves_the_key_file_serving_and_says_so(
    tmp_path: Path, simulator: ServerHandle
) -> None:
    # What `spendgate proxy` alone with a key file does now that the control plane is on by default:
    # fail_open serves the file's keys (and follows the file), /healthz says budgets are not enforced.
    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens: the default address on a machine without a collector
    for gw in start_gateway(tmp_path, simulator, control={"endpoint": endpoint, "reconnect_max_backoff_s": 0.2}):
        assert 200 == _chat(gw.proxy.url, gw.keys["ana@acme.com"]).status_code
        late, _ = create_key(gw.keys_file, user="late@acme.com")
        assert 200 == _chat(gw.proxy.url, late).status_code
        control = httpx.get(gw.proxy.url + "/healthz").json()["control"]
        assert ("never_connected", False, "key file", endpoint) == (
            control["state"],
            control["budgets_enforced"],
            control["keys_from"],
            control["endpoint"],
        )
        assert control["since"] is not None and control["disconnected_s"] is not None


def test_standalone_healthz_says_budgets_are_not_enforced(gateway: Gateway) -> None:
    control = httpx.get(gateway.proxy.url + "/healthz").json()["control"]
    assert ("standalone", False, None, None) == (
        control["state"],
        control["budgets_enforced"],
        control["endpoint"],
        control["since"],
    )
