"""The exporters' own process: runs a ``Forwarder`` and talks to the collector over its stdin/stdout.

    python -m spendgate_collector.exporters.process     # started by ExportManager, never by hand

Why a process: forwarding costs ~20-30 µs of CPU per span (rewriting it, writing and reading the
queue, sending). In the collector's process that time is taken under the same interpreter lock as
ingest and cut peak ingest by ~40 % (docs/performance.md, "Export"); here it runs on another core.

Messages are length-prefixed pickles (``frame``/``read_frame``), between two processes of the same
installation only. Collector → here: ``("config", [exporter dicts], queue path, log level)`` first,
then ``("batch", seq, [(payload, spans, [record tuples + fresh flag]), ...])``, ``("idle?", token)``
and ``("stop",)``. Here → collector: ``("started",)`` or ``("failed", message)``, ``("queued", seq)``
once a batch is in the persistent queue, ``("stats", {name: stats dict})`` every
``STATS_INTERVAL_S`` while anything changes, ``("idle", token, bool, stats)`` and, last,
``("stopped", stats)``. End of input (the collector died) stops the process the same way as ``("stop",)``.
Logs go to stderr, which the collector's process shares.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import signal
import struct
import sys
import threading
from pathlib import Path
from typing import IO, Any, BinaryIO

from .enrich import ForwardRecord, StoredRequest

STATS_INTERVAL_S = 0.2
_LENGTH = struct.Struct("<Q")

logger = logging.getLogger("spendgate_collector.exporters")


def frame(message: Any) -> bytes:
    """One message as bytes: 8-byte length, then its pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def read_frame(stream: IO[bytes]) -> Any:
    """The next message, or ``None`` at end of stream."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    data = stream.read(length)
    if len(data) < length:
        return None
    return pickle.loads(data)


def decode_batch(
    requests: list[tuple[bytes, int, list[tuple[Any, ...]]]],
) -> tuple[list[StoredRequest], set[int] | None]:
    """Wire form of a batch → ``StoredRequest``s and the ids of fresh records (``None``: all fresh)."""
    stored = []
    stale = False
    fresh_ids: set[int] = set()
    for payload, spans, rows in requests:
        records = []
        for row in rows:
            record = ForwardRecord._make(row[:-1])
            records.append(record)
            if row[-1]:
                fresh_ids.add(id(record))
            else:
                stale = True
        stored.append(StoredRequest(payload, spans, records))
    return stored, (fresh_ids if stale else None)


class _Link:
    """The write side towards the collector, shared by threads."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.broken = False

    def send(self, message: Any) -> None:
        data = frame(message)
        with self._lock:
            if self.broken:
                return
            try:
                self._stream.write(data)
                self._stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.broken = True  # the collector is gone; input ends soon too


def _stats(forwarder: Any) -> dict[str, dict[str, Any]]:
    return {name: dataclasses.asdict(s) for name, s in forwarder.stats().items()}


class _Stop(Exception):
    """SIGTERM: stop as on ``("stop",)``."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Stop


def serve(stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Run until ``("stop",)`` or end of input; return the exit status."""
    from .config import ExporterConfig
    from .forwarder import Forwarder

    link = _Link(stdout)
    first = read_frame(stdin)
    if not first or first[0] != "config":
        return 2
    _, entries, queue_path, level = first
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        configs = [ExporterConfig.model_validate(e) for e in entries]
        forwarder = Forwarder(configs, Path(queue_path), on_queued=lambda seq: link.send(("queued", seq)))
        forwarder.start()
    except Exception as exc:
        link.send(("failed", f"{type(exc).__name__}: {exc}"))
        return 1
    link.send(("started",))
    link.send(("stats", _stats(forwarder)))

    stop_stats = threading.Event()

    def push_stats() -> None:
        last: dict[str, dict[str, Any]] | None = None
        while not stop_stats.wait(STATS_INTERVAL_S):
            current = _stats(forwarder)
            comparable = {k: {f: v for f, v in s.items() if f != "oldest_queued_s"} for k, s in current.items()}
            if comparable != last or any(s["queue_requests"] for s in current.values()):
                link.send(("stats", current))
                last = comparable

    pusher = threading.Thread(target=push_stats, name="spendgate-export-stats", daemon=True)
    pusher.start()
    try:
        while True:
            message = read_frame(stdin)
            if message is None or message[0] == "stop":
                break
            kind = message[0]
            if kind == "batch":
                _, seq, requests = message
                stored, fresh = decode_batch(requests)
                forwarder.submit(stored, fresh, token=seq)
            elif kind == "idle?":
                idle = forwarder.idle()  # before the stats: they then show at least what idle saw
                link.send(("idle", message[1], idle, _stats(forwarder)))
    except _Stop:
        pass
    finally:
        stop_stats.set()
        pusher.join()
        forwarder.shutdown()
        link.send(("stopped", _stats(forwarder)))
    return 0


def main() -> int:
    # The collector stops this process itself (``("stop",)``, or end of input if it died): Ctrl-C in
    # a terminal must not kill it mid-batch; a SIGTERM stops it cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Messages own stdout: anything a library prints goes to stderr instead of into the stream.
    link = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return serve(sys.stdin.buffer, link)


if __name__ == "__main__":
    sys.exit(main())
