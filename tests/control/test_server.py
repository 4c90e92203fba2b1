"""The collector's control-plane server, read through a raw gRPC subscription: snapshot, deltas, resume, heartbeats."""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
import yaml

from spendgate_collector.app import Collector
from spendgate_collector.budgets.board import ROUTE
from spendgate_collector.config import CollectorConfig, load_config
from spendgate_collector.control import ControlLog, ControlServer
from spendgate_proxy.keys import create_key, revoke_key
from spendgate_semconv import control_pb2
from tests.control.support import Subscriber, budget_state, subscribed, verdict, wait_until


def _server(board: ControlLog, keys_file: Path | None, **kwargs: object) -> ControlServer:
    kwargs.setdefault("keys_poll_s", 0.02)
    return ControlServer("127.0.0.1:0", board, keys_file, **kwargs)  # type: ignore[arg-type]


def test_subscribe_gets_a_snapshot_then_every_change_as_a_gap_free_delta(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    _, ana = create_key(keys_file, user="ana@acme.com", team="platform", cost_center="CC-1", repo="acme-api")
    _, bo = create_key(keys_file, user="bo@acme.com", team="mobile", models=("gpt-4o-mini",))
    board = ControlLog()
    board.publish((verdict("team-pause", team="platform"),))

    async def scenario() -> None:
        server = _server(board, keys_file)
        await server.start()
        try:
            async with subscribed(server.port) as sub:
                snap = await sub.read()
                assert snap.snapshot and not snap.heartbeat
                assert server.log is not None and snap.epoch == server.log.epoch != 0
                assert {ana.principal.key_id, bo.principal.key_id} == {k.key_id for k in snap.keys_upsert}
                entry = next(k for k in snap.keys_upsert if k.key_id == ana.principal.key_id)
                assert (ana.hash, "ana@acme.com", "platform", "CC-1", "acme-api") == (
                    entry.hash,
                    entry.user,
                    entry.team,
                    entry.cost_center,
                    entry.repo,
                )
                assert ["gpt-4o-mini"] == next(k.models for k in snap.keys_upsert if k.key_id == bo.principal.key_id)
                (v,) = snap.verdicts_upsert
                assert ("team-pause", control_pb2.Verdict.PAUSE, "platform", "") == (
                    v.id,
                    v.action,
                    v.scope.team,
                    v.scope.user,
                )
                versions = [snap.version]

                board.publish((verdict("route-mini", ROUTE, route_from="gpt-4o", route_to="gpt-4o-mini", repo="r"),))
                d1 = await sub.read_change()
                assert (["route-mini"], []) == ([v.id for v in d1.verdicts_upsert], list(d1.verdicts_removed))
                assert ("gpt-4o", "gpt-4o-mini", "r") == (
                    d1.verdicts_upsert[0].route_from,
                    d1.verdicts_upsert[0].route_to,
                    d1.verdicts_upsert[0].scope.repo,
                )
                versions.append(d1.version)

                board.publish(removals=("team-pause",))
                d2 = await sub.read_change()
                assert ([], ["team-pause"]) == (list(d2.verdicts_upsert), list(d2.verdicts_removed))
                versions.append(d2.version)

                _, cy = create_key(keys_file, user="cy@acme.com", team="mobile")
                d3 = await sub.read_change()
                assert [cy.principal.key_id] == [k.key_id for k in d3.keys_upsert]
                assert not d3.verdicts_upsert and not d3.keys_removed
                versions.append(d3.version)

                revoke_key(keys_file, bo.principal.key_id)
                d4 = await sub.read_change()
                assert [bo.principal.key_id] == [k.key_id for k in d4.keys_upsert]
                assert d4.keys_upsert[0].revoked_at_unix_ms > 0
                versions.append(d4.version)

                doc = yaml.safe_load(keys_file.read_text())
                doc["keys"] = [k for k in doc["keys"] if k["id"] != ana.principal.key_id]
                keys_file.write_text(yaml.safe_dump(doc))
                d5 = await sub.read_change()
                assert ([], [ana.principal.key_id]) == (list(d5.keys_upsert), list(d5.keys_removed))
                versions.append(d5.version)

                assert all(not u.snapshot for u in (d1, d2, d3, d4, d5))
                assert list(range(versions[0], versions[0] + 6)) == versions
                assert {snap.epoch} == {u.epoch for u in (d1, d2, d3, d4, d5)}
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_budget_states_ride_the_same_gap_free_sequence_as_verdicts(tmp_path: Path) -> None:
    board = ControlLog()
    board.publish(budgets=(budget_state("platform", limit_usd=10, spend_usd=1, team="platform"),))

    async def scenario() -> None:
        server = _server(board, None)
        await server.start()
        try:
            async with subscribed(server.port) as sub:
                snap = await sub.read()
                (b,) = snap.budgets_upsert
                assert ("platform", "platform", 10.0, 1.0, "ok") == (
                    b.budget_id,
                    b.scope.team,
                    b.limit_usd,
                    b.spend_usd,
                    b.state,
                )
                board.publish(budgets=(budget_state("platform", limit_usd=10, spend_usd=8.5, team="platform"),))
                d1 = await sub.read_change()
                assert [8.5] == [b.spend_usd for b in d1.budgets_upsert]
                board.publish((verdict("team-pause", team="platform"),))
                d2 = await sub.read_change()
                assert (["team-pause"], []) == ([v.id for v in d2.verdicts_upsert], list(d2.budgets_upsert))
                board.publish(budgets_removed=("platform",))
                d3 = await sub.read_change()
                assert ["platform"] == list(d3.budgets_removed)
                assert [snap.version + 1, snap.version + 2, snap.version + 3] == [d1.version, d2.version, d3.version]
                assert server.log is not None and {} == dict(server.log.budgets)
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_changes_published_from_other_threads_wake_the_stream_in_order(tmp_path: Path) -> None:
    # The budget engine publishes from the pipeline's writer thread, API threads and its timer;
    # a stream waiting on the event loop must see each change, as the next version, without polling.
    board = ControlLog()

    async def scenario() -> None:
        server = _server(board, None, heartbeat_s=30)  # a heartbeat must not be what wakes the stream
        await server.start()
        try:
            async with subscribed(server.port) as sub:
                snap = await sub.read()
                for i in range(3):
                    await asyncio.to_thread(board.publish, (verdict(f"p{i}", team=f"t{i}"),))
                deltas = [await sub.read_change(timeout=5) for _ in range(3)]
            assert [snap.version + 1, snap.version + 2, snap.version + 3] == [d.version for d in deltas]
            assert [["p0"], ["p1"], ["p2"]] == [[v.id for v in d.verdicts_upsert] for d in deltas]
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_resume_sends_exactly_the_missed_changes_then_a_heartbeat_when_current(tmp_path: Path) -> None:
    board = ControlLog()

    async def scenario() -> None:
        server = _server(board, None)
        await server.start()
        try:
            async with subscribed(server.port) as sub:
                snap = await sub.read()
            board.publish((verdict("p1", team="a"),))
            board.publish((verdict("p2", team="b"),))
            board.publish(removals=("p1",))
            async with subscribed(server.port, resume_version=snap.version, epoch=snap.epoch) as sub:
                missed = [await sub.read() for _ in range(3)]
                # Nothing else is owed: the next update can only be a heartbeat, never a replay.
                board.publish((verdict("p3", team="c"),))
                live = await sub.read_change()
            assert [False, False, False] == [u.snapshot or u.heartbeat for u in missed]
            assert [snap.version + 1, snap.version + 2, snap.version + 3] == [u.version for u in missed]
            assert [["p1"], ["p2"], []] == [[v.id for v in u.verdicts_upsert] for u in missed]
            assert [[], [], ["p1"]] == [list(u.verdicts_removed) for u in missed]
            assert (snap.version + 4, ["p3"]) == (live.version, [v.id for v in live.verdicts_upsert])

            async with subscribed(server.port, resume_version=live.version, epoch=snap.epoch) as sub:
                first = await sub.read()
            assert (True, False, live.version) == (first.heartbeat, first.snapshot, first.version)
        finally:
            await server.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("why", ["unknown epoch", "ahead of the log", "older than the history"])
def test_resume_that_cannot_be_served_as_deltas_gets_a_snapshot(tmp_path: Path, why: str) -> None:
    board = ControlLog(max_history=2)

    async def scenario() -> None:
        server = _server(board, None)
        await server.start()
        try:
            async with subscribed(server.port) as sub:
                snap = await sub.read()
            for i in range(3):
                board.publish((verdict(f"p{i}", team=f"t{i}"),))
            await wait_until(lambda: server.log is not None and server.log.version == snap.version + 3, what="log")
            resume = {
                "unknown epoch": {"resume_version": snap.version, "epoch": snap.epoch + 1},
                "ahead of the log": {"resume_version": snap.version + 50, "epoch": snap.epoch},
                "older than the history": {"resume_version": snap.version, "epoch": snap.epoch},
            }[why]
            async with subscribed(server.port, **resume) as sub:
                again = await sub.read()
            assert again.snapshot
            assert (snap.version + 3, {"p0", "p1", "p2"}) == (again.version, {v.id for v in again.verdicts_upsert})
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_idle_stream_heartbeats_at_the_current_version_and_lists_the_proxy(tmp_path: Path) -> None:
    board = ControlLog()
    board.publish((verdict("p1", team="a"),))

    async def scenario() -> None:
        server = _server(board, None, heartbeat_s=0.05)
        await server.start()
        try:
            async with subscribed(server.port, proxy_id="proxy-7") as sub:
                snap = await sub.read()
                beats = [await sub.read() for _ in range(3)]
                assert [(True, snap.version, snap.epoch)] * 3 == [(b.heartbeat, b.version, b.epoch) for b in beats]
                assert all(b.server_time_unix_ms > 0 for b in beats)
                (conn,) = server.connected()
                assert ("proxy-7", "test", False, snap.version) == (
                    conn.proxy_id,
                    conn.proxy_version,
                    conn.resumed,
                    conn.last_version_sent,
                )
                assert conn.peer.startswith("ipv4:127.0.0.1:")
                assert 1 == len(server.stats()["proxies"])
            await wait_until(lambda: not server.connected(), what="the proxy to be forgotten")
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_graceful_stop_ends_streams_and_abrupt_stop_cuts_them(tmp_path: Path) -> None:
    board = ControlLog()

    async def scenario() -> None:
        server = _server(board, None)
        await server.start()
        sub = Subscriber(server.port)
        await sub.read()
        await server.stop(1.0)
        assert grpc.aio.EOF is await asyncio.wait_for(sub.call.read(), 5)
        assert grpc.StatusCode.OK == await sub.call.code()
        await sub.close()
        await server.stop()  # idempotent

        abrupt = _server(board, None)
        await abrupt.start()
        sub = Subscriber(abrupt.port)
        await sub.read()
        await abrupt.stop(None)
        with pytest.raises(grpc.aio.AioRpcError):
            while await asyncio.wait_for(sub.call.read(), 5) is not grpc.aio.EOF:
                pass
        assert grpc.StatusCode.OK != await sub.call.code()
        await sub.close()

    asyncio.run(scenario())


def test_a_broken_keys_file_keeps_the_last_good_directory(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    _, ana = create_key(keys_file, user="ana@acme.com")

    async def scenario() -> None:
        server = _server(ControlLog(), keys_file)
        await server.start()
        try:
            async with subscribed(server.port) as sub:
                snap = await sub.read()
                keys_file.write_text("keys: [ {id: half-written")
                await asyncio.sleep(0.1)  # several polls see the broken file
                assert server.log is not None and [ana.principal.key_id] == list(server.log.keys)
                keys_file.unlink()
                create_key(keys_file, user="cy@acme.com")
                change = await sub.read_change()
            assert (snap.version + 1, [ana.principal.key_id]) == (change.version, list(change.keys_removed))
            assert ["cy@acme.com"] == [k.user for k in change.keys_upsert]
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_collector_serves_the_control_plane_from_its_board_and_keys_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    _, ana = create_key(keys_file, user="ana@acme.com", team="platform")
    config = CollectorConfig(
        db=tmp_path / "c.db",
        otlp_grpc="off",
        otlp_http="off",
        api="off",
        control="127.0.0.1:0",
        control_heartbeat_s=0.5,
        keys_file=keys_file,
    )

    async def scenario() -> None:
        async with Collector(config) as collector:
            assert collector.control_port and collector.control_endpoint == f"127.0.0.1:{collector.control_port}"
            async with subscribed(collector.control_port) as sub:
                snap = await sub.read()
                assert [ana.principal.key_id] == [k.key_id for k in snap.keys_upsert]
                collector.control_log.publish((verdict("p", team="platform"),))
                delta = await sub.read_change()
                assert (snap.version + 1, ["p"]) == (delta.version, [v.id for v in delta.verdicts_upsert])
                assert 1 == collector.health()["control"]["verdicts"]

    asyncio.run(scenario())


def test_collector_config_control_address_defaults_and_off(tmp_path: Path) -> None:
    assert "127.0.0.1:4320" == CollectorConfig().control
    assert None is load_config(environ={"SPENDGATE_COLLECTOR_CONTROL": "off"}).control
    assert "0.0.0.0:0" == load_config(environ={}, control="0.0.0.0:0").control

    async def scenario() -> None:
        config = CollectorConfig(db=tmp_path / "c.db", otlp_grpc="off", otlp_http="off", api="off", control="off")
        async with Collector(config) as collector:
            assert (None, None, None) == (collector.control, collector.control_port, collector.control_endpoint)

    asyncio.run(scenario())
