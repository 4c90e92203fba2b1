"""``ControlClient`` against real control servers: convergence, fail-static, reconnects, resume, readiness."""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from spendgate_collector.budgets.board import ROUTE
from spendgate_collector.control import ControlLog, ControlServer, verdict_message
from spendgate_proxy.config import ConfigError, load_config
from spendgate_proxy.control.client import ControlClient, start_control
from spendgate_proxy.control.state import ControlState
from spendgate_proxy.keys import KeyDirectory, Principal, create_key, revoke_key
from spendgate_semconv import control_pb2, control_pb2_grpc
from tests.control.support import TcpHop, free_port, verdict, wait_until

HEARTBEAT_S = 0.1


class RecordingState(ControlState):
    """A ``ControlState`` that also keeps every update it accepted, to check none is missed or repeated."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.applied: list[tuple[int, int, bool]] = []

    def apply(self, update: control_pb2.ControlUpdate) -> bool:
        changed = super().apply(update)
        if changed:
            self.applied.append((update.epoch, update.version, update.snapshot))
        return changed


def _client(port: int, state: ControlState, **kwargs: object) -> ControlClient:
    options: dict[str, object] = {
        "heartbeat_timeout_s": 3 * HEARTBEAT_S,
        "initial_backoff_s": 0.02,
        "max_backoff_s": 0.2,
        "rng": random.Random(7),
    }
    options.update(kwargs)
    return ControlClient(f"127.0.0.1:{port}", state, proxy_id="proxy-a", **options)  # type: ignore[arg-type]


def _refusal(keys: KeyDirectory, key: str) -> str | None:
    """Why ``key`` is refused, or None when it is accepted."""
    try:
        keys.lookup(key)
    except LookupError as exc:
        return str(exc)
    return None


def _server(board: ControlLog, keys_file: Path | None = None, port: int = 0) -> ControlServer:
    return ControlServer(f"127.0.0.1:{port}", board, keys_file, heartbeat_s=HEARTBEAT_S, keys_poll_s=0.02)


def test_client_applies_the_snapshot_then_verdict_and_key_changes(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    ana_key, ana = create_key(keys_file, user="ana@acme.com", team="platform", repo="acme-api")
    board = ControlLog()
    board.publish((verdict("team-pause", team="platform"),))

    async def scenario() -> None:
        server = _server(board, keys_file)
        await server.start()
        keys = KeyDirectory()
        state = RecordingState(keys)
        client = _client(server.port, state)
        client.start()
        try:
            assert await client.wait_ready(5)
            principal = keys.lookup(ana_key)
            assert "team-pause" == state.verdict_for(principal, None, "gpt-4o").id  # type: ignore[union-attr]

            board.publish((verdict("route", ROUTE, route_from="gpt-4o", route_to="gpt-4o-mini", repo="acme-api"),))
            board.publish(removals=("team-pause",))
            await wait_until(lambda: {v.id for v in state.verdicts()} == {"route"}, what="the route")
            assert "route" == state.verdict_for(principal, None, "gpt-4o").id  # type: ignore[union-attr]

            revoke_key(keys_file, ana.principal.key_id)
            await wait_until(lambda: _refusal(keys, ana_key) == f"virtual key {ana.principal.key_id} was revoked")
            bo_key, _ = create_key(keys_file, user="bo@acme.com", team="mobile")
            await wait_until(lambda: len(keys) == 2, what="bo's key")
            assert "mobile" == keys.lookup(bo_key).team

            assert server.log is not None
            assert server.log.version == state.version
            first_epoch, first_version, _ = state.applied[0]
            assert [(first_epoch, v, v == first_version) for v in range(first_version, state.version + 1)] == (
                state.applied
            )
            assert (1, 0, True) == (state.snapshots, state.duplicates, state.connected)
            (conn,) = server.connected()
            assert "proxy-a" == conn.proxy_id
        finally:
            await client.stop()
            await server.stop()

    asyncio.run(scenario())


def test_collector_restart_keeps_the_last_state_then_converges_to_the_new_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        first_board = ControlLog()
        first_board.publish((verdict("old-pause", team="platform"),))
        first = _server(first_board)
        await first.start()
        port = first.port
        assert port is not None
        state = RecordingState()
        client = _client(port, state)
        client.start()
        ana = Principal("key_ana", "ana@acme.com", team="platform")
        try:
            assert await client.wait_ready(5)
            old_epoch = state.epoch
            await first.stop(None)  # the collector dies mid-stream
            await wait_until(lambda: not state.connected, what="the client to notice")
            # Fail-static: while no collector answers, the last verdicts are still enforced.
            await asyncio.sleep(5 * HEARTBEAT_S)
            assert "old-pause" == state.verdict_for(ana, None, "m").id  # type: ignore[union-attr]
            failures_while_down = client.failures
            assert failures_while_down >= 2  # it kept retrying, with backoff

            second_board = ControlLog()  # a new lifetime: new epoch, versions start over
            second_board.publish((verdict("new-route", ROUTE, route_to="gpt-4o-mini", team="platform"),))
            second = _server(second_board, port=port)
            await second.start()
            try:
                await wait_until(lambda: state.epoch != old_epoch and state.connected, what="the new collector")
                assert "new-route" == state.verdict_for(ana, None, "m").id  # type: ignore[union-attr]
                assert [(old_epoch, True), (state.epoch, True)] == [(e, s) for e, _, s in state.applied]
                assert 0 == client.failures
            finally:
                await client.stop()
                await second.stop()
        finally:
            await client.stop()
            await first.stop()

    asyncio.run(scenario())


def test_network_cut_resumes_from_the_last_version_with_nothing_missed_or_repeated(tmp_path: Path) -> None:
    async def scenario() -> None:
        board = ControlLog()
        server = _server(board)
        await server.start()
        hop = TcpHop(server.port)  # type: ignore[arg-type]
        await hop.start()
        state = RecordingState()
        client = _client(hop.port, state)
        client.start()
        try:
            assert await client.wait_ready(5)
            board.publish((verdict("p1", team="a"),))
            await wait_until(lambda: [v.id for v in state.verdicts()] == ["p1"], what="p1")

            hop.refusing = True
            hop.cut()
            await wait_until(lambda: not state.connected, what="the cut to be noticed")
            board.publish((verdict("p2", team="b"),))
            board.publish(removals=("p1",))
            board.publish((verdict("p3", team="c"),))
            await asyncio.sleep(3 * HEARTBEAT_S)  # reconnects are refused meanwhile
            assert {"p1"} == {v.id for v in state.verdicts()}

            hop.refusing = False
            await wait_until(lambda: {v.id for v in state.verdicts()} == {"p2", "p3"}, what="the resume")
            assert server.log is not None and server.log.version == state.version
            assert {"p2", "p3"} == {v.id for v in state.verdicts()}
            versions = [v for _, v, _ in state.applied]
            assert list(range(versions[0], versions[0] + len(versions))) == versions
            assert [True] + [False] * (len(versions) - 1) == [s for _, _, s in state.applied]  # one snapshot
            assert (0, 1) == (state.duplicates, state.snapshots)
            assert any(c.resumed for c in server.connected())
        finally:
            await client.stop()
            await hop.stop()
            await server.stop()

    asyncio.run(scenario())


class SilentServicer(control_pb2_grpc.ControlPlaneServicer):
    """A collector that sends a snapshot and then nothing, ever: a stream gone dead without closing."""

    def __init__(self) -> None:
        self.subscribes: list[control_pb2.SubscribeRequest] = []

    async def Subscribe(  # named by the .proto
        self, request: control_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[control_pb2.ControlUpdate]:
        self.subscribes.append(request)
        if request.epoch != 99:
            yield control_pb2.ControlUpdate(
                version=3,
                epoch=99,
                snapshot=True,
                verdicts_upsert=[verdict_message(verdict("p", team="platform"))],
            )
        await asyncio.Event().wait()


def test_a_silent_stream_times_out_and_the_client_resubscribes_from_its_version() -> None:
    async def scenario() -> None:
        servicer = SilentServicer()
        server = grpc.aio.server()
        control_pb2_grpc.add_ControlPlaneServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        state = ControlState()
        client = _client(port, state)
        client.start()
        try:
            assert await client.wait_ready(5)
            await wait_until(lambda: len(servicer.subscribes) >= 3, what="resubscribes after silence")
            assert [(0, 0)] + [(99, 3)] * 2 == [(r.epoch, r.resume_version) for r in servicer.subscribes[:3]]
            assert "no update or heartbeat" in (client.last_error or "")
            assert (True, 3, 1) == (state.ready, state.version, len(state.verdicts()))  # kept meanwhile
        finally:
            await client.stop()
            await server.stop(None)

    asyncio.run(scenario())


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
def test_a_proxy_that_never_got_state_follows_its_policy_until_the_first_snapshot(tmp_path: Path, policy: str) -> None:
    keys_file = tmp_path / "keys.yaml"
    local_key, _ = create_key(keys_file, user="local@acme.com")
    collector_keys = tmp_path / "collector-keys.yaml"
    collector_key, _ = create_key(collector_keys, user="central@acme.com")

    async def scenario() -> None:
        port = free_port()
        settings = load_config(
            env={"SPENDGATE_CONTROL_ENDPOINT": f"127.0.0.1:{port}", "SPENDGATE_CONTROL_ON_NO_STATE": policy},
            overrides={"control": {"heartbeat_timeout_s": 0.3, "reconnect_max_backoff_s": 0.1}},
        )
        keys = KeyDirectory(keys_file)
        client = await start_control(settings, keys)
        try:
            assert not await client.wait_ready(0.3)  # nothing listens yet
            assert client.failures >= 1
            assert (False, policy == "fail_closed") == (client.state.ready, client.state.should_refuse)
            assert "local@acme.com" == keys.lookup(local_key).user  # the key file serves meanwhile

            server = _server(ControlLog(), collector_keys, port=port)
            await server.start()
            try:
                assert await client.wait_ready(5)
                assert (True, False) == (client.state.ready, client.state.should_refuse)
                with pytest.raises(LookupError):
                    keys.lookup(local_key)  # the collector's directory rules: the local file no longer counts
                assert "central@acme.com" == keys.lookup(collector_key).user
            finally:
                await client.stop()
                await server.stop()
        finally:
            await client.stop()

    asyncio.run(scenario())


def test_a_collector_without_a_key_source_leaves_the_proxy_its_key_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    local_key, _ = create_key(keys_file, user="local@acme.com")
    board = ControlLog()
    board.publish((verdict("team-pause", team="platform"),))

    async def scenario() -> None:
        server = _server(board)  # no keys file: its snapshot says it has no key directory
        await server.start()
        keys = KeyDirectory(keys_file)
        client = ControlClient(f"127.0.0.1:{server.port}", ControlState(keys))
        client.start()
        try:
            assert await client.wait_ready(5)
            assert "local@acme.com" == keys.lookup(local_key).user  # what `spendgate proxy` alone expects
            assert (False, False) == (keys.managed, client.state.keys_from_collector)
            assert ["team-pause"] == [v.id for v in client.state.verdicts()]  # budgets still apply
            assert "key file" == client.stats()["keys_from"]
        finally:
            await client.stop()
            await server.stop()

    asyncio.run(scenario())


def test_standalone_proxy_is_ready_at_once_and_never_connects(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        settings = load_config(env={"SPENDGATE_CONTROL_ENDPOINT": "off"})
        with caplog.at_level("WARNING", logger="spendgate.proxy.control"):
            client = await start_control(settings, KeyDirectory())
        (said,) = [r.getMessage() for r in caplog.records]
        assert "control: off" in said and "budgets and key updates from a collector are NOT enforced" in said
        assert None is settings.control.endpoint
        assert await client.wait_ready(0)
        assert (True, False, 0) == (client.state.ready, client.state.should_refuse, client.subscribes)
        await client.stop()
        await client.stop()

    asyncio.run(scenario())


def test_backoff_doubles_to_the_cap_with_half_of_it_jittered() -> None:
    client = ControlClient("127.0.0.1:1", ControlState(), initial_backoff_s=0.5, max_backoff_s=30, rng=random.Random(1))
    for failures, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 30.0), (60, 30.0)]:
        delays = [client.backoff(failures) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (failures, delays)
        assert len(set(delays)) > 1  # jittered, so a fleet does not reconnect in step


def test_control_settings_validate_the_endpoint() -> None:
    assert None is load_config(env={"SPENDGATE_CONTROL_ENDPOINT": "off"}).control.endpoint
    with pytest.raises(ConfigError, match=r"control\.endpoint"):
        load_config(env={"SPENDGATE_CONTROL_ENDPOINT": "collector.internal"})
    with pytest.raises(ConfigError, match=r"control\.on_no_state"):
        load_config(env={"SPENDGATE_CONTROL_ON_NO_STATE": "maybe"})


# --- the default endpoint, `off`, and what a proxy says about its control state


def test_the_control_plane_is_on_by_default_towards_the_collectors_default_address() -> None:
    from spendgate_collector.config import DEFAULT_CONTROL

    settings = load_config(env={})
    assert DEFAULT_CONTROL == settings.control.endpoint == "127.0.0.1:4320"
    assert not settings.control.standalone
    # An empty variable counts as unset (as OTEL_* ones do): it cannot turn budgets off.
    assert "127.0.0.1:4320" == load_config(env={"SPENDGATE_CONTROL_ENDPOINT": ""}).control.endpoint


@pytest.mark.parametrize(
    "text",
    [
        "control: off\n",
        "control:\n  endpoint: off\n",
        "control:\n  endpoint: 'off'\n",
        "proxy:\n  control: off\n",
        "control: none\n",
    ],
)
def test_only_an_explicit_off_makes_a_proxy_standalone(tmp_path: Path, text: str) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(text)
    # An override of another field must not bring the default endpoint back.
    settings = load_config(path, env={"SPENDGATE_CONTROL_ON_NO_STATE": "fail_closed"})
    assert (None, True, "fail_closed") == (
        settings.control.endpoint,
        settings.control.standalone,
        settings.control.on_no_state,
    )


@pytest.mark.parametrize(
    "text",
    ["control:\n", "control:\n  # endpoint: off\n  proxy_id: p1\n", "control: {}\n", "control: on\n"],
)
def test_leaving_the_section_empty_keeps_the_default(tmp_path: Path, text: str) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(text)
    assert "127.0.0.1:4320" == load_config(path, env={}).control.endpoint


def test_the_environment_and_flags_override_off_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text("control: off\n")
    assert "10.0.0.5:4320" == load_config(path, env={"SPENDGATE_CONTROL_ENDPOINT": "10.0.0.5:4320"}).control.endpoint
    path.write_text("control:\n  endpoint: 10.0.0.5:4320\n")
    assert None is load_config(path, env={"SPENDGATE_CONTROL_ENDPOINT": "off"}).control.endpoint
    assert None is load_config(path, env={}, overrides={"control": {"endpoint": "off"}}).control.endpoint
    assert "127.0.0.1:9" == load_config(env={}, overrides={"control": "127.0.0.1:9"}).control.endpoint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("control:\n  endpoint:\n", r"control\.endpoint: empty; give the collector's control address"),
        ("control:\n  endpoint: ''\n", r"control\.endpoint: empty"),
        ("control:\n  endpoint: collector\n", r"control\.endpoint: must be host:port"),
        ("control:\n  endpoint: 4320\n", r"control\.endpoint: expected host:port or off"),
        ("control: 4320\n", r"control: expected a mapping, off, or host:port"),
        ("control:\n  endpont: off\n", r"control\.endpont"),
    ],
)
def test_config_errors_name_the_control_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_unreachable_control_plane_is_warned_about_first_then_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    client = ControlClient("127.0.0.1:1", ControlState(), clock=clock)
    client.last_error = "UNAVAILABLE: connection refused"
    warned = []
    with caplog.at_level("DEBUG", logger="spendgate_proxy.control.client"):
        for _ in range(300):  # ten minutes of failures, one every two seconds
            warned.append(client.note_failure(2.0))
            clock.now += 2.0
    assert [True] + [False] * 29 + [True] == warned[:31]  # the first, then once per 60 s
    assert 10 == sum(warned) == client.warnings
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert 10 == len(warnings)
    assert "for 0s since start" in warnings[0] and "NOT enforced" in warnings[0]
    assert "for 9m00s since start" in warnings[-1]  # says how long it has been
    assert "control: off runs standalone" in warnings[0]

    # Connected, then lost: warned at once again, saying since when.
    client.note_connected()
    client.state.set_connected(True)
    assert "established after 10m00s: budgets are enforced" in caplog.records[-1].getMessage()
    caplog.clear()
    assert ("connected", True) == (client.state.control_state, client.stats()["budgets_enforced"])
    clock.now += 3600
    client.state.set_connected(False)
    with caplog.at_level("WARNING", logger="spendgate_proxy.control.client"):
        assert client.note_failure(0.5)
        clock.now += 30
        assert not client.note_failure(0.5)
        clock.now += 31
        assert client.note_failure(0.5)
    lost = [r.getMessage() for r in caplog.records]
    assert 2 == len(lost)
    assert "lost since" in lost[0] and "(0s ago;" in lost[0] and "NOT enforced" in lost[0]
    assert "(1m01s ago;" in lost[1]
    stats = client.stats()
    assert ("lost", False, 61.0) == (stats["state"], stats["budgets_enforced"], stats["disconnected_s"])


def test_healthz_control_fields_for_each_state(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    create_key(keys_file, user="ana@acme.com")

    async def scenario() -> None:
        standalone = await start_control(load_config(env={"SPENDGATE_CONTROL_ENDPOINT": "off"}), KeyDirectory())
        s = standalone.stats()
        assert ("standalone", None, False, None) == (s["state"], s["since"], s["budgets_enforced"], s["endpoint"])
        await standalone.stop()

        port = free_port()
        settings = load_config(
            env={"SPENDGATE_CONTROL_ENDPOINT": f"127.0.0.1:{port}"},
            overrides={"control": {"reconnect_initial_backoff_s": 0.05, "reconnect_max_backoff_s": 0.1}},
        )
        keys = KeyDirectory(keys_file)
        client = await start_control(settings, keys)
        try:
            await wait_until(lambda: client.failures >= 1, what="a failed attempt")
            s = client.stats()
            assert ("never_connected", False, "key file") == (s["state"], s["budgets_enforced"], s["keys_from"])
            assert s["since"] is not None and s["disconnected_s"] >= 0
            server = _server(ControlLog(), keys_file, port=port)
            await server.start()
            try:
                assert await client.wait_ready(5)
                s = client.stats()
                assert ("connected", True, "collector", None) == (
                    s["state"],
                    s["budgets_enforced"],
                    s["keys_from"],
                    s["disconnected_s"],
                )
            finally:
                await server.stop(None)  # a crash: the proxy loses its stream
            await wait_until(lambda: not client.state.connected, what="the stream to drop")
            s = client.stats()
            assert ("lost", False) == (s["state"], s["budgets_enforced"])
            assert s["since"] is not None and s["disconnected_s"] >= 0
        finally:
            await client.stop()

    asyncio.run(scenario())


def test_a_proxy_that_stops_says_so_and_is_not_counted_as_lost(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = _server(ControlLog())
        await server.start()
        try:
            clean = ControlClient(f"127.0.0.1:{server.port}", ControlState(), proxy_id="clean")
            crashing = ControlClient(f"127.0.0.1:{server.port}", ControlState(), proxy_id="crashing")
            for c in (clean, crashing):
                c.start()
                assert await c.wait_ready(5)
            assert {"clean", "crashing"} == {p.proxy_id for p in server.connected()}
            await clean.stop()  # says Leave first
            crashing._task.cancel()  # type: ignore[union-attr]  # gone without a word
            await wait_until(lambda: not server.connected(), what="both streams to end")
            assert [("crashing", "lost")] == [(p["proxy_id"], p["state"]) for p in server.not_enforced()]
            # It comes back: enforced again.
            back = ControlClient(f"127.0.0.1:{server.port}", ControlState(), proxy_id="crashing")
            back.start()
            assert await back.wait_ready(5)
            assert [] == server.not_enforced()
            await back.stop()
            await crashing.stop()
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_sync_keys_reads_the_collectors_file_at_once_and_waits_for_the_stream(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    create_key(keys_file, user="ana@acme.com")

    async def scenario() -> None:
        # A file poll far too slow to help: only SyncKeys can bring the new key in time.
        server = ControlServer("127.0.0.1:0", ControlLog(), keys_file, heartbeat_s=HEARTBEAT_S, keys_poll_s=3600)
        await server.start()
        keys = KeyDirectory()
        client = ControlClient(f"127.0.0.1:{server.port}", ControlState(keys))
        client.start()
        try:
            assert await client.wait_ready(5)
            new_key, _ = create_key(keys_file, user="bo@acme.com")
            with pytest.raises(LookupError):
                keys.lookup(new_key)
            assert await client.sync_keys()
            assert "bo@acme.com" == keys.lookup(new_key).user
            assert 1 == server.stats()["key_syncs"]
        finally:
            await client.stop()
            await server.stop()

    asyncio.run(scenario())
