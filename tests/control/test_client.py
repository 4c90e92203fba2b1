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

from spendgate.proxy.config import ConfigError, load_config
from spendgate.proxy.control import ControlClient, ControlState, start_control
from spendgate.proxy.keys import KeyDirectory, Principal, create_key, revoke_key
from spendgate_collector.budgets.board import ROUTE
from spendgate_collector.control import ControlLog, ControlServer, verdict_message
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

            server = _server(ControlLog(), port=port)
            await server.start()
            try:
                assert await client.wait_ready(5)
                assert (True, False) == (client.state.ready, client.state.should_refuse)
                with pytest.raises(LookupError):
                    keys.lookup(local_key)  # this collector has no keys file: its empty directory rules
            finally:
                await client.stop()
                await server.stop()
        finally:
            await client.stop()

    asyncio.run(scenario())


def test_standalone_proxy_is_ready_at_once_and_never_connects() -> None:
    async def scenario() -> None:
        settings = load_config(env={})
        client = await start_control(settings, KeyDirectory())
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
