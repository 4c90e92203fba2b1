"""``spendgate.configure()``: one call that makes an application's LLM spans carry attribution and reach OTLP.

It either builds a ``TracerProvider`` with a batch processor and an OTLP exporter (and makes it the
global one), or attaches spendgate's span processor to a provider that already exists: the one
passed as ``tracer_provider``, else the global provider when it is the OpenTelemetry SDK's. Settings
resolve explicit argument -> standard ``OTEL_*`` variable -> default; the variables read here are
the constants below, each with its meaning and default. Settings the OTel SDK reads itself
(``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_EXPORTER_OTLP_TIMEOUT``, certificates) keep working as documented by OpenTelemetry.

Calling ``configure()`` again while configured returns the same handle: it never adds a second
processor or exporter. The handle flushes at interpreter exit; ``shutdown()`` flushes now.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from spendgate import context as _ctx
from spendgate.processor import SpendgateSpanProcessor

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

logger = logging.getLogger(__name__)

# --- environment variables read by configure()

OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
"""Service name when ``service_name`` is not passed (read through the OTel SDK's resource
detection, as is ``OTEL_RESOURCE_ATTRIBUTES``); default ``unknown_service``."""

OTEL_TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
"""Exporter when ``exporter`` is not passed: ``otlp`` (default), ``console`` (spans as JSON on
stdout) or ``none``. Only the first entry of a comma-separated list is used."""

OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
"""OTLP protocol for traces: ``grpc`` or ``http/protobuf``; wins over ``OTEL_EXPORTER_OTLP_PROTOCOL``."""

OTEL_EXPORTER_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
"""OTLP protocol for every signal; default ``grpc``. ``http/protobuf`` needs
``opentelemetry-exporter-otlp-proto-http`` installed."""

OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
"""Trace endpoint, used as is; wins over ``OTEL_EXPORTER_OTLP_ENDPOINT``."""

OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
"""Base OTLP endpoint; default ``http://localhost:4317`` for gRPC, ``http://localhost:4318`` for
HTTP (where ``/v1/traces`` is appended)."""

# --- defaults

DEFAULT_PROTOCOL = "grpc"
"""OTLP protocol when neither argument nor environment names one."""

PROTOCOLS = ("grpc", "http/protobuf")
"""Protocols ``configure`` can export with."""

DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318/v1/traces"}
"""Where spans go when no endpoint is configured: a collector on this machine."""

SHUTDOWN_TIMEOUT_MS = 5_000
"""How long ``shutdown()`` (and so interpreter exit) waits for the last spans to be exported. An
unreachable endpoint therefore delays exit by at most this much."""


@dataclass(frozen=True, slots=True)
class SdkStats:
    """A snapshot of the SDK's counters (best effort: increments from several threads are not locked)."""

    spans_stamped: int
    """LLM spans that received attribution."""
    processor_errors: int
    """Errors caught while attributing a span (the span went on without attribution)."""
    spans_exported: int
    """Spans the exporter reported as delivered."""
    spans_export_failed: int
    """Spans in batches that failed to export (after the exporter's own retries); they are lost."""
    export_failures: int
    """Failed export calls, including exporter exceptions swallowed on the host's behalf."""


_ZERO_STATS = SdkStats(0, 0, 0, 0, 0)


class CountingExporter(SpanExporter):
    """Wraps any ``SpanExporter`` to count delivered and failed spans; never lets an exception out.

    The batch processor already catches exceptions, but counting needs the result, and a
    ``SimpleSpanProcessor`` would pass an exception into the thread that ended the span.
    """

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.spans_exported = 0
        self.spans_failed = 0
        self.failures = 0
        self._logged = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
            if not self._logged:
                # Not logged again: an endpoint that stays down would flood the host's logs.
                self._logged = True
                logger.warning("spendgate: span exporter raised; spans dropped and counted", exc_info=True)
        if result is SpanExportResult.SUCCESS:
            self.spans_exported += len(spans)
        else:
            self.failures += 1
            self.spans_failed += len(spans)
        return result

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        # The batch processor passes the time it has left only to exporters that take timeout_millis.
        try:
            try:
                self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)  # type: ignore[call-arg]
            except TypeError:
                self.inner.shutdown()
        except Exception:
            logger.warning("spendgate: span exporter failed to shut down", exc_info=True)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        try:
            return self.inner.force_flush(timeout_millis)
        except Exception:
            return False


class _BoundedBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor, with a shutdown that waits at most ``SHUTDOWN_TIMEOUT_MS`` by default.

    ``BatchSpanProcessor.shutdown()`` takes no timeout and its inner processor defaults to 30 s, which
    an unreachable collector would add to the host's exit (the provider calls ``shutdown()`` bare).
    """

    def shutdown(self, timeout_millis: int = SHUTDOWN_TIMEOUT_MS) -> None:
        inner = getattr(self, "_batch_processor", None)  # SDK >= 1.33; older ones only offer the bare form
        if inner is not None and hasattr(inner, "shutdown"):
            inner.shutdown(timeout_millis)
        else:
            super().shutdown()


class SpendgateHandle:
    """What ``configure()`` returns: the provider in use and the lifecycle of what spendgate added.

    ``owns_provider`` says whether spendgate created the provider (then ``shutdown`` shuts it down)
    or attached to the application's (then only spendgate's own processor and exporter stop).
    """

    def __init__(
        self,
        tracer_provider: TracerProvider,
        processor: SpendgateSpanProcessor,
        export_processor: _BoundedBatchSpanProcessor | None,
        exporter: CountingExporter | None,
        owns_provider: bool,
        settings: tuple[Any, ...],
    ) -> None:
        self.tracer_provider = tracer_provider
        self.processor = processor
        self.export_processor = export_processor
        self.exporter = exporter
        self.owns_provider = owns_provider
        self._settings = settings
        self._shutdown = False
        self._lock = threading.Lock()

    @property
    def is_shutdown(self) -> bool:
        return self._shutdown

    def stats(self) -> SdkStats:
        p = self.processor.stats()
        e = self.exporter
        return SdkStats(
            spans_stamped=p.spans_stamped,
            processor_errors=p.errors,
            spans_exported=e.spans_exported if e else 0,
            spans_export_failed=e.spans_failed if e else 0,
            export_failures=e.failures if e else 0,
        )

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every ended span now; False when the timeout passed or spendgate is shut down."""
        if self._shutdown:
            return False
        try:
            if self.export_processor is not None:
                return self.export_processor.force_flush(timeout_millis)
            return self.tracer_provider.force_flush(timeout_millis)
        except Exception:
            logger.warning("spendgate: force_flush failed", exc_info=True)
            return False

    def shutdown(self, timeout_millis: int = SHUTDOWN_TIMEOUT_MS) -> None:
        """Flush and stop what spendgate added; idempotent, and safe after an exporter failure.

        Waits at most ``timeout_millis`` for an export in flight. Afterwards ``configure()`` may be
        called again (OpenTelemetry lets the global provider be set only once per process, so a
        provider created then is not made global).
        """
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
        atexit.unregister(self._at_exit)
        self.processor.enabled = False
        try:
            if self.export_processor is not None:
                self.export_processor.shutdown(timeout_millis)
            if self.owns_provider:
                self.tracer_provider.shutdown()
        except Exception:
            logger.warning("spendgate: shutdown failed", exc_info=True)
        _forget(self)

    def _at_exit(self) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "shut down" if self._shutdown else "active"
        return f"<SpendgateHandle {state} owns_provider={self.owns_provider}>"


_lock = threading.Lock()
_handle: SpendgateHandle | None = None


def _forget(handle: SpendgateHandle) -> None:
    global _handle
    with _lock:
        if _handle is handle:
            _handle = None
            # configure(baggage=False) was this handle's setting, not a lasting one.
            _ctx.set_baggage_propagation(True)


def current_handle() -> SpendgateHandle | None:
    """The handle of the active ``configure()``, or None."""
    return _handle


def stats() -> SdkStats:
    """Counters of the active ``configure()`` (all zero when spendgate is not configured)."""
    handle = _handle
    return handle.stats() if handle is not None else _ZERO_STATS


def force_flush(timeout_millis: int = 30_000) -> bool:
    """Export every ended span now (True when nothing is configured)."""
    handle = _handle
    return handle.force_flush(timeout_millis) if handle is not None else True


def shutdown(timeout_millis: int = SHUTDOWN_TIMEOUT_MS) -> None:
    """Flush and stop the active ``configure()``; does nothing when not configured."""
    handle = _handle
    if handle is not None:
        handle.shutdown(timeout_millis)


def configure(
    *,
    service_name: str | None = None,
    endpoint: str | None = None,
    headers: Mapping[str, str] | str | None = None,
    protocol: str | None = None,
    team: str | None = None,
    repo: str | None = None,
    cost_center: str | None = None,
    user: str | None = None,
    feature: str | None = None,
    branch: str | None = None,
    tags: Iterable[str] | str | None = None,
    tracer_provider: TracerProvider | None = None,
    exporter: SpanExporter | None = None,
    export_timeout: float | None = None,
    baggage: bool = True,
    set_global: bool = True,
) -> SpendgateHandle:
    """Set up attribution and export of LLM spans for this process; returns a ``SpendgateHandle``.

    Attribution defaults (``team``, ``repo``, ``cost_center``, ``user``, ``feature``, ``branch``,
    ``tags``) apply to every LLM span; ``spendgate.attribute`` blocks and incoming baggage override
    them field by field.

    Pipeline: with ``tracer_provider`` (an SDK ``TracerProvider``), or when the global provider is
    already the SDK's, spendgate attaches its processor to it and adds an exporter only when
    ``endpoint`` or ``exporter`` is passed (the application already exports its spans). Otherwise it
    creates a provider named ``service_name`` with a batch processor and an exporter, and makes it
    global unless ``set_global=False``. The exporter is ``exporter`` when passed (any SDK
    ``SpanExporter``; wrapped to count failures), else per ``OTEL_TRACES_EXPORTER`` an OTLP exporter
    over ``protocol`` (``grpc`` or ``http/protobuf``) to ``endpoint`` with ``headers`` (a mapping or
    ``"k=v,k2=v2"``) and ``export_timeout`` seconds per export. For ``http/protobuf`` an endpoint
    without a path gets ``/v1/traces``.

    ``baggage=False`` stops writing attribution to W3C baggage and ignores incoming spendgate
    baggage. Calling again while configured updates the attribution defaults (merged into the old
    ones) and returns the same handle; other changed settings are logged and ignored until
    ``shutdown()``.

    Raises ``ValueError`` for an unknown ``protocol`` argument, ``TypeError`` for a
    ``tracer_provider`` that is not an SDK ``TracerProvider``, and ``ImportError`` naming the pip
    package when ``http/protobuf`` is asked for without its exporter installed.
    """
    global _handle
    defaults = _ctx.make_attribution(
        user=user, repo=repo, team=team, cost_center=cost_center, feature=feature, branch=branch, tags=tags
    )
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)} (got {protocol!r})")
    if tracer_provider is not None and not isinstance(tracer_provider, TracerProvider):
        raise TypeError(
            "spendgate.configure(tracer_provider=...) needs an opentelemetry.sdk.trace.TracerProvider, "
            f"not {type(tracer_provider).__name__}"
        )
    settings = (service_name, endpoint, _hashable(headers), protocol, id(tracer_provider), id(exporter), set_global)

    with _lock:
        _ctx.set_baggage_propagation(baggage)
        if _handle is not None and not _handle.is_shutdown:
            handle = _handle
            handle.processor.read_baggage = baggage
            if not defaults.is_empty():
                handle.processor.defaults = handle.processor.defaults.merged(defaults)
            if settings != handle._settings:
                logger.warning(
                    "spendgate.configure() was already called; export settings of this call are ignored "
                    "(call spendgate.shutdown() first to change them)"
                )
            return handle

        owns = False
        provider: TracerProvider
        if tracer_provider is not None:
            provider = tracer_provider
        else:
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider) and not _is_shut_down(current):
                provider = current
            else:
                provider = _new_provider(service_name)
                owns = True
                if set_global:
                    _set_global(provider, current)

        processor = getattr(provider, "_spendgate_processor", None)
        if isinstance(processor, SpendgateSpanProcessor):
            # Re-configuring a provider we attached to before: reuse the (disabled) processor, so
            # the provider never holds two.
            processor.defaults = defaults
            processor.read_baggage = baggage
            processor.enabled = True
        else:
            processor = SpendgateSpanProcessor(defaults, read_baggage=baggage)
            provider.add_span_processor(processor)
            provider._spendgate_processor = processor  # type: ignore[attr-defined]

        counting: CountingExporter | None = None
        export_processor: _BoundedBatchSpanProcessor | None = None
        if owns or endpoint is not None or exporter is not None:
            inner = exporter or _exporter_from_settings(endpoint, headers, protocol, export_timeout)
            if inner is not None:
                counting = CountingExporter(inner)
                export_processor = _BoundedBatchSpanProcessor(counting)
                provider.add_span_processor(export_processor)

        handle = SpendgateHandle(provider, processor, export_processor, counting, owns, settings)
        atexit.register(handle._at_exit)
        _handle = handle
        return handle


def _hashable(headers: Mapping[str, str] | str | None) -> Any:
    return tuple(sorted(headers.items())) if isinstance(headers, Mapping) else headers


def _new_provider(service_name: str | None) -> TracerProvider:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; an explicit name wins.
    resource = Resource.create({SERVICE_NAME: service_name} if service_name else {})
    # shutdown_on_exit=False: the handle's own atexit hook shuts down with a bounded wait instead of
    # the SDK's 30 s, so an unreachable collector cannot hold the host's exit for long.
    return TracerProvider(resource=resource, shutdown_on_exit=False)


def _set_global(provider: TracerProvider, current: object) -> None:
    if isinstance(current, trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is provider:
            return
    logger.warning(
        "spendgate: the global tracer provider is already set (%s); spendgate created its own provider. "
        "Pass handle.tracer_provider to your instrumentors, or call configure(tracer_provider=...)",
        type(trace.get_tracer_provider()).__name__,
    )


def _is_shut_down(provider: TracerProvider) -> bool:
    """Whether spendgate's processor saw this provider shut down (a dead global from an earlier configure)."""
    processor = getattr(provider, "_spendgate_processor", None)
    return isinstance(processor, SpendgateSpanProcessor) and processor.provider_shut_down


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def resolve_protocol(protocol: str | None = None) -> str:
    """Argument -> ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` -> ``OTEL_EXPORTER_OTLP_PROTOCOL`` -> ``grpc``."""
    if protocol is not None:
        return protocol
    value = _env(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL)
    if value is None:
        return DEFAULT_PROTOCOL
    if value not in PROTOCOLS:
        logger.warning("spendgate: unsupported OTLP protocol %r in the environment; using %s", value, DEFAULT_PROTOCOL)
        return DEFAULT_PROTOCOL
    return value


def resolve_endpoint(endpoint: str | None, protocol: str) -> str:
    """Argument -> ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` -> ``OTEL_EXPORTER_OTLP_ENDPOINT`` -> default.

    For ``http/protobuf`` a base URL (argument or the generic variable) without a path gets
    ``/v1/traces``, as the OTLP spec says for the generic variable.
    """
    if endpoint is None:
        specific = _env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
        if specific is not None:
            return specific
        endpoint = _env(OTEL_EXPORTER_OTLP_ENDPOINT)
        if endpoint is None:
            return DEFAULT_ENDPOINTS[protocol]
    if protocol == "http/protobuf" and urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def _parse_headers(headers: Mapping[str, str] | str | None) -> dict[str, str] | None:
    if headers is None:
        return None  # the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)HEADERS itself
    if isinstance(headers, Mapping):
        return {str(k).strip().lower(): str(v).strip() for k, v in headers.items()}
    from urllib.parse import unquote

    out: dict[str, str] = {}
    for item in headers.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[unquote(key.strip()).lower()] = unquote(value.strip())
    return out


def _exporter_from_settings(
    endpoint: str | None,
    headers: Mapping[str, str] | str | None,
    protocol: str | None,
    timeout: float | None,
) -> SpanExporter | None:
    if endpoint is None:
        choice = (_env(OTEL_TRACES_EXPORTER) or "otlp").split(",")[0].strip().lower()
        if choice == "none":
            return None
        if choice == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            return ConsoleSpanExporter()
        if choice != "otlp":
            logger.warning("spendgate: unsupported %s=%r; using otlp", OTEL_TRACES_EXPORTER, choice)
    proto = resolve_protocol(protocol)
    url = resolve_endpoint(endpoint, proto)
    parsed_headers = _parse_headers(headers)
    if proto == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        # insecure follows the URL's scheme (http:// -> plaintext), as the exporter decides.
        return OTLPSpanExporter(endpoint=url, headers=parsed_headers, timeout=timeout)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPSpanExporter
    except ImportError as exc:
        raise ImportError(
            "spendgate: OTLP over http/protobuf needs the 'opentelemetry-exporter-otlp-proto-http' package "
            "(pip install opentelemetry-exporter-otlp-proto-http), or use protocol='grpc'"
        ) from exc
    return HTTPSpanExporter(endpoint=url, headers=parsed_headers, timeout=timeout)
