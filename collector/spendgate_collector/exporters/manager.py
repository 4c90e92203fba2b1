"""``ExportManager``: the collector's side of the exporters: hand stored batches to their own process.

The pipeline's writer thread calls ``after_commit`` once a batch is durable in the store; that only
appends it to an in-memory hand-off and returns (no logging, no I/O, never blocks). A shipper thread
turns each batch into a compact message (payload bytes, plus one tuple per LLM record: its ids,
cost and attribution) and writes it to the exporters' process (``process.py``), which rewrites,
queues and sends (``forwarder.py``). Shipping costs ~2 µs of the collector's CPU per span; the
~20-30 µs of forwarding work is done on another core.

Nothing is lost between the two processes: a batch is kept until the exporters' process says it is
in the persistent queue, and sent again to a new exporters' process if that one died (it is then
restarted, with a short backoff). Both hand-offs are bounded (``HANDOFF_MAX_BYTES``): when the
exporters' process cannot keep up, the oldest batches are dropped and counted as ``overflow``.

Stats arrive from the exporters' process a few times a second; ``stats()`` returns the latest, and
the Prometheus metrics (``spendgate_collector_exporter_*``) follow them. Its counters restart at zero
with a new exporters' process; the Prometheus counters do not.
"""

from __future__ import annotations

import collections
import itertools
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from .enrich import forward_fields
from .forwarder import ATTEMPT_RESULTS, DROP_REASONS, HANDOFF_MAX_BYTES, LOG_EVERY_S, ExporterStats
from .process import frame, read_frame

if TYPE_CHECKING:
    from ..records import SpendRecord
    from .config import ExporterConfig

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
RESTART_DELAY_S = 1.0
STOP_TIMEOUT_S = 15.0


class _Metrics:
    """The exporters' Prometheus metrics, in the collector's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "spendgate_collector_exporter_sent_spans",
            "Spans accepted by an exporter's backend.",
            ["exporter"],
            registry=registry,
        )
        self.dropped = Counter(
            "spendgate_collector_exporter_dropped_spans",
            "Spans an exporter gave up on, by reason (queue_full, permanent, rejected, overflow, error).",
            ["exporter", "reason"],
            registry=registry,
        )
        self.attempts = Counter(
            "spendgate_collector_exporter_send_attempts",
            "Requests sent to a backend, by result (success, retryable, permanent).",
            ["exporter", "result"],
            registry=registry,
        )
        self.send_seconds = Counter(
            "spendgate_collector_exporter_send_seconds",
            "Time spent sending to a backend (divide by send_attempts for the mean).",
            ["exporter"],
            registry=registry,
        )
        self.queue_spans = Gauge(
            "spendgate_collector_exporter_queue_spans",
            "Spans waiting in an exporter's persistent queue.",
            ["exporter"],
            registry=registry,
        )
        self.queue_bytes = Gauge(
            "spendgate_collector_exporter_queue_bytes",
            "Bytes waiting in an exporter's persistent queue.",
            ["exporter"],
            registry=registry,
        )
        self.oldest = Gauge(
            "spendgate_collector_exporter_queue_oldest_seconds",
            "Age of the oldest request waiting in an exporter's queue (0 when empty).",
            ["exporter"],
            registry=registry,
        )
        self.restarts = Counter(
            "spendgate_collector_exporter_process_restarts",
            "Times the exporters' process died and was started again.",
            registry=registry,
        )
        self._last: dict[tuple[str, str], float] = {}

    def reset_baseline(self) -> None:
        """A new exporters' process counts from zero again."""
        self._last.clear()

    def update(self, stats: dict[str, dict[str, Any]]) -> None:
        for name, s in stats.items():
            self._add(self.sent.labels(name), (name, "sent"), s["sent_spans"])
            self._add(self.send_seconds.labels(name), (name, "seconds"), s["send_seconds"])
            for reason in DROP_REASONS:
                self._add(self.dropped.labels(name, reason), (name, f"drop:{reason}"), s["dropped_spans"][reason])
            for result in ATTEMPT_RESULTS:
                self._add(self.attempts.labels(name, result), (name, f"try:{result}"), s["attempts"][result])
            self.queue_spans.labels(name).set(s["queue_spans"])
            self.queue_bytes.labels(name).set(s["queue_bytes"])
            self.oldest.labels(name).set(s["oldest_queued_s"] or 0.0)

    def _add(self, counter: Any, key: tuple[str, str], value: float) -> None:
        delta = value - self._last.get(key, 0.0)
        if delta > 0:
            counter.inc(delta)
        self._last[key] = value


@dataclass(slots=True)
class _Pending:
    seq: int
    message: bytes
    spans: int


class ExportManager:
    """Runs the exporters in their own process; the collector-side API (start, hand-off, stats, stop)."""

    def __init__(self, configs: Sequence[ExporterConfig], queue_path: Path, registry: CollectorRegistry) -> None:
        self._configs = list(configs)
        self.queue_path = queue_path
        self._metrics = _Metrics(registry)
        self._cond = threading.Condition()
        # Batches from the writer thread, not yet shipped: (requests, inserted records, payload bytes).
        self._handoff: collections.deque[tuple[list[tuple[bytes, int, list[SpendRecord]]], list[SpendRecord], int]]
        self._handoff = collections.deque()
        self._handoff_bytes = 0
        # Shipped, not yet acknowledged as queued by the exporters' process: resent if it dies.
        self._unacked: collections.OrderedDict[int, _Pending] = collections.OrderedDict()
        self._unacked_bytes = 0
        self._overflow: dict[str, int] = dict.fromkeys((c.name for c in self._configs), 0)
        self._overflow_pending = 0
        self._overflow_warned = -LOG_EVERY_S
        self._seq = itertools.count(1)
        self._idle_tokens = itertools.count(1)
        self._idle_replies: dict[int, bool] = {}
        self._stats: dict[str, dict[str, Any]] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_lock = threading.Lock()
        self._shipping = False
        self._closing = False
        self._stopped = False
        self._alive = threading.Event()  # set while an exporters' process is up and listening
        self._threads: list[threading.Thread] = []

    # --- lifecycle

    def start(self) -> None:
        """Start the exporters' process (raises when it cannot start) and the shipper; blocks briefly."""
        if self._proc is not None or self._stopped:
            return
        self._spawn()
        shipper = threading.Thread(target=self._run_shipper, name="spendgate-export-shipper", daemon=True)
        shipper.start()
        self._threads.append(shipper)

    def _spawn(self) -> None:
        """Start one exporters' process and its listener; raise ``RuntimeError`` if it fails to start."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "spendgate_collector.exporters.process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # Out of the terminal's process group: Ctrl-C reaches the collector, which stops it.
            start_new_session=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        stdout = proc.stdout
        entries = [c.model_dump(mode="json") for c in self._configs]
        level = logging.getLogger("spendgate_collector").getEffectiveLevel()
        try:
            proc.stdin.write(frame(("config", entries, str(self.queue_path), level)))
            proc.stdin.flush()
        except OSError:
            pass
        started = threading.Event()
        outcome: list[Any] = []

        def first_reply() -> None:
            outcome.append(read_frame(stdout))
            started.set()

        waiter = threading.Thread(target=first_reply, daemon=True)
        waiter.start()
        if not started.wait(START_TIMEOUT_S) or not outcome or outcome[0] is None or outcome[0][0] != "started":
            proc.kill()
            proc.wait()
            reason = outcome[0][1] if outcome and outcome[0] and outcome[0][0] == "failed" else "no answer"
            raise RuntimeError(f"the exporters' process did not start: {reason}")
        self._metrics.reset_baseline()
        self._proc = proc
        listener = threading.Thread(
            target=self._run_listener, args=(proc,), name="spendgate-export-listener", daemon=True
        )
        listener.start()
        self._threads.append(listener)
        with self._cond:
            pending = list(self._unacked.values())
        for item in pending:  # a previous process died before queueing these
            self._write(item.message)
        self._alive.set()

    def shutdown(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Ship what is handed off, let the exporters' process queue it and stop. Idempotent; blocks."""
        if self._stopped:
            return
        self._stopped = True
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._handoff and not self._shipping, timeout)
        proc = self._proc
        if proc is not None:
            self._write(frame(("stop",)))
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.error("the exporters' process did not stop within %.0fs; killed", timeout)
                proc.kill()
                proc.wait()
            if proc.stdin is not None:
                proc.stdin.close()
        self._alive.set()  # wakes a shipper waiting for a process
        for thread in self._threads:
            thread.join(5)

    # --- intake (pipeline writer thread): no logging, no I/O, never blocks

    def after_commit(self, requests: list[tuple[bytes, int, list[SpendRecord]]], inserted: list[SpendRecord]) -> None:
        """Hand over requests whose spans are now durable; ``inserted`` are the records newly stored."""
        if self._closing:
            return
        size = sum(len(payload) for payload, _, _ in requests)
        with self._cond:
            self._handoff.append((requests, inserted, size))
            self._handoff_bytes += size
            while self._handoff_bytes > HANDOFF_MAX_BYTES and len(self._handoff) > 1:
                dropped, _, dropped_size = self._handoff.popleft()
                self._handoff_bytes -= dropped_size
                self._overflow_pending += sum(spans for _, spans, _ in dropped)  # counted by the shipper
            self._cond.notify_all()

    # --- shipper thread

    def _run_shipper(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._handoff or self._closing)
                if not self._handoff:
                    return
                requests, inserted, _ = self._handoff.popleft()
                self._handoff_bytes -= sum(len(p) for p, _, _ in requests)
                self._shipping = True
                overflow, self._overflow_pending = self._overflow_pending, 0
                for name in self._overflow:
                    self._overflow[name] += overflow
            if overflow:
                self._count_overflow(overflow)
            try:
                seq = next(self._seq)
                pending = _Pending(
                    seq, frame(("batch", seq, _encode(requests, inserted))), sum(s for _, s, _ in requests)
                )
                with self._cond:
                    self._unacked[seq] = pending
                    self._unacked_bytes += len(pending.message)
                    while self._unacked_bytes > HANDOFF_MAX_BYTES and len(self._unacked) > 1:
                        # Not acknowledged after this many bytes: the exporters' process is stuck or
                        # gone for long; stop keeping a copy of the oldest.
                        _, old = self._unacked.popitem(last=False)
                        self._unacked_bytes -= len(old.message)
                self._alive.wait()
                self._write(pending.message)
            except Exception:
                logger.exception("could not hand a batch to the exporters' process")
            finally:
                with self._cond:
                    self._shipping = False
                    self._cond.notify_all()

    def _count_overflow(self, spans: int) -> None:
        for name in self._overflow:
            self._metrics.dropped.labels(name, "overflow").inc(spans)
        now = time.monotonic()
        if now - self._overflow_warned >= LOG_EVERY_S:
            self._overflow_warned = now
            logger.warning(
                "exporters: hand-off full (the exporters' process is not keeping up); %d spans dropped", spans
            )

    def _write(self, data: bytes) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        with self._write_lock:
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass  # the listener sees the process end and starts a new one, which gets it again

    # --- listener thread (one per exporters' process)

    def _run_listener(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        while True:
            message = read_frame(proc.stdout)
            if message is None:
                break
            kind = message[0]
            if kind == "queued":
                with self._cond:
                    pending = self._unacked.pop(message[1], None)
                    if pending is not None:
                        self._unacked_bytes -= len(pending.message)
                    self._cond.notify_all()
            elif kind in ("stats", "stopped"):
                self._stats = message[1]
                self._metrics.update(message[1])
            elif kind == "idle":
                self._stats = message[3]
                self._metrics.update(message[3])
                with self._cond:
                    self._idle_replies[message[1]] = message[2]
                    self._cond.notify_all()
        proc.wait()
        if self._stopped:
            return
        self._alive.clear()
        logger.error("the exporters' process exited (status %s); starting a new one", proc.returncode)
        self._metrics.restarts.inc()
        while not self._stopped:
            time.sleep(RESTART_DELAY_S)
            try:
                self._spawn()
                return
            except Exception:
                logger.exception("could not restart the exporters' process; trying again")

    # --- introspection

    def stats(self) -> dict[str, ExporterStats]:
        """The latest snapshot per exporter (a few tenths of a second old at most), for ``/healthz``."""
        out = {}
        with self._cond:
            overflow = dict(self._overflow)
        for name, s in self._stats.items():
            fields = dict(s)
            fields["dropped_spans"] = {**s["dropped_spans"]}
            fields["dropped_spans"]["overflow"] += overflow.get(name, 0)
            out[name] = ExporterStats(**fields)
        return out

    @property
    def pid(self) -> int | None:
        """Process id of the exporters' process."""
        return self._proc.pid if self._proc is not None else None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until everything handed off has been sent or dropped by every exporter."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                busy = self._handoff or self._shipping or self._unacked
            if not busy and self._ask_idle(max(0.0, deadline - time.monotonic())):
                return True
            time.sleep(0.02)
        return False

    def _ask_idle(self, timeout: float) -> bool:
        token = next(self._idle_tokens)
        self._write(frame(("idle?", token)))
        with self._cond:
            self._cond.wait_for(lambda: token in self._idle_replies, min(timeout, 2.0))
            return self._idle_replies.pop(token, False)


def _encode(requests: list[tuple[bytes, int, list[SpendRecord]]], inserted: list[SpendRecord]) -> list[Any]:
    """A batch in the wire form ``process.decode_batch`` reads: records as plain tuples + a fresh flag."""
    total = sum(len(records) for _, _, records in requests)
    if len(inserted) == total:
        return [(payload, spans, [(*forward_fields(r), True) for r in records]) for payload, spans, records in requests]
    # Some records were duplicates (a client re-sent spans): they are not forwarded again.
    fresh = {id(r) for r in inserted}
    return [
        (payload, spans, [(*forward_fields(r), id(r) in fresh) for r in records])
        for payload, spans, records in requests
    ]
