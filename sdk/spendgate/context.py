"""Attribution context: who, which repo, team, cost centre and feature an LLM call is charged to.

``attribute(user=..., repo=..., ...)`` is a context manager, an ``async with`` form and a decorator
(sync and async functions). It stores an ``Attribution`` in the OpenTelemetry context, which lives in
a ``contextvars.ContextVar``: asyncio tasks inherit the attribution current when they are created,
and code that copies the context into a thread (``contextvars.copy_context().run``, OTel's own
context propagation) carries it there. A new ``threading.Thread`` or a ``ThreadPoolExecutor`` worker
starts with an empty context and sees no attribution unless the context is carried over.

Nested blocks merge field by field (the inner value wins; tags are a union). Each block also
writes its merged attribution into W3C baggage under the keys in ``BAGGAGE_KEYS``, so a service
called over HTTP with OTel propagation (``opentelemetry.propagate.inject``, or any HTTP client
instrumentation) can pick it up: ``current_attribution`` falls back to baggage when no block is
active locally. Baggage writing can be switched off process-wide with ``set_baggage_propagation``.

Nothing here touches spans: ``spendgate.processor`` reads the context when a span starts.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Any, TypeVar

from opentelemetry import baggage
from opentelemetry import context as otel_context

F = TypeVar("F", bound=Callable[..., Any])

_ATTRIBUTION_KEY = otel_context.create_key("spendgate-attribution")

FIELDS: tuple[str, ...] = ("user", "repo", "team", "cost_center", "feature", "branch", "tags")
"""The attribution fields, in the order they are documented."""

BAGGAGE_PREFIX = "spendgate."
"""Prefix of spendgate's W3C baggage keys."""

BAGGAGE_KEYS: Mapping[str, str] = {name: BAGGAGE_PREFIX + name for name in FIELDS}
"""Attribution field -> W3C baggage key (``spendgate.user``, ``spendgate.repo``, ...). ``tags`` travel
comma-joined in one entry."""

MAX_BAGGAGE_VALUE = 256
"""Longest value taken from incoming baggage; longer values are cut, so a caller cannot bloat spans."""

# Process-wide switch, read on every block entry; a plain module global because it is set once at
# configure() time and a racy read only affects one block.
_propagate_baggage = True


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who and what an LLM call is charged to. ``None`` (or an empty tuple of tags) means "not set"."""

    user: str | None = None
    repo: str | None = None
    team: str | None = None
    cost_center: str | None = None
    feature: str | None = None
    branch: str | None = None
    tags: tuple[str, ...] = ()

    def merged(self, inner: Attribution) -> Attribution:
        """This attribution overridden by ``inner`` field by field; tags are a union, outer first."""
        if self.is_empty():
            return inner
        if inner.is_empty():
            return self
        tags = self.tags + tuple(t for t in inner.tags if t not in self.tags)
        return Attribution(
            user=inner.user or self.user,
            repo=inner.repo or self.repo,
            team=inner.team or self.team,
            cost_center=inner.cost_center or self.cost_center,
            feature=inner.feature or self.feature,
            branch=inner.branch or self.branch,
            tags=tags,
        )

    def is_empty(self) -> bool:
        return not (self.user or self.repo or self.team or self.cost_center or self.feature or self.branch or self.tags)

    def as_dict(self) -> dict[str, Any]:
        """The fields that are set, as a plain dict (tags as a list)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value:
                out[f.name] = list(value) if f.name == "tags" else value
        return out


EMPTY = Attribution()


def make_attribution(
    *,
    user: str | None = None,
    repo: str | None = None,
    team: str | None = None,
    cost_center: str | None = None,
    feature: str | None = None,
    branch: str | None = None,
    tags: Iterable[str] | str | None = None,
) -> Attribution:
    """Build an ``Attribution`` from keyword arguments, checking types (a bare string is one tag).

    Raises ``TypeError`` for a non-string field: that is a bug at the call site, better seen at once
    than as a missing attribute on a dashboard.
    """
    values = {
        "user": user,
        "repo": repo,
        "team": team,
        "cost_center": cost_center,
        "feature": feature,
        "branch": branch,
    }
    for name, value in values.items():
        if value is not None and not isinstance(value, str):
            raise TypeError(f"spendgate attribution field {name!r} must be a str or None, not {type(value).__name__}")
    return Attribution(
        **{name: (value or None) for name, value in values.items()},
        tags=_tags(tags),
    )


def _tags(tags: Iterable[str] | str | None) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str):
        tags = (tags,)
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"spendgate tags must be strings, not {type(tag).__name__}")
        if tag and tag not in out:
            out.append(tag)
    return tuple(out)


def set_baggage_propagation(enabled: bool) -> None:
    """Whether ``attribute`` blocks also write W3C baggage (default on). ``configure(baggage=...)`` sets it."""
    global _propagate_baggage
    _propagate_baggage = bool(enabled)


def baggage_propagation() -> bool:
    """Whether ``attribute`` blocks currently write W3C baggage."""
    return _propagate_baggage


def local_attribution(ctx: otel_context.Context | None = None) -> Attribution | None:
    """The attribution set by an ``attribute`` block in this context (or ``ctx``), ignoring baggage."""
    value = otel_context.get_value(_ATTRIBUTION_KEY, ctx)
    return value if isinstance(value, Attribution) else None


def attribution_from_baggage(ctx: otel_context.Context | None = None) -> Attribution | None:
    """The attribution carried in the W3C baggage of this context (or ``ctx``), if any."""
    entries = baggage.get_all(ctx)
    if not entries:
        return None
    return _from_baggage_entries(entries)


def _from_baggage_entries(entries: Mapping[str, object]) -> Attribution | None:
    found: dict[str, Any] = {}
    for name, key in BAGGAGE_KEYS.items():
        raw = entries.get(key)
        if raw is None:
            continue
        text = str(raw).strip()[:MAX_BAGGAGE_VALUE]
        if not text:
            continue
        if name == "tags":
            found[name] = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
        else:
            found[name] = text
    return Attribution(**found) if found else None


def current_attribution(ctx: otel_context.Context | None = None) -> Attribution | None:
    """The attribution in force: the innermost ``attribute`` block, else incoming baggage, else ``None``.

    Process-wide defaults from ``configure()`` are not included: the span processor adds them.
    """
    return local_attribution(ctx) or attribution_from_baggage(ctx)


def _with_baggage(attribution: Attribution, ctx: otel_context.Context) -> otel_context.Context:
    for name, key in BAGGAGE_KEYS.items():
        value = getattr(attribution, name)
        if not value:
            continue
        ctx = baggage.set_baggage(key, ",".join(value) if name == "tags" else value, ctx)
    return ctx


class AttributionScope:
    """What ``attribute(...)`` returns: a context manager (sync and async) and a decorator.

    One scope object may be entered several times (nested or re-entered), but not from several
    threads at once: create one per use (``with spendgate.attribute(...)``), as decorators do per call.
    """

    __slots__ = ("_attribution", "_tokens")

    def __init__(self, attribution: Attribution) -> None:
        self._attribution = attribution
        self._tokens: list[object] = []

    @property
    def attribution(self) -> Attribution:
        """The fields this scope sets (before merging with outer blocks)."""
        return self._attribution

    def __enter__(self) -> Attribution:
        ctx = otel_context.get_current()
        outer = current_attribution(ctx)
        merged = outer.merged(self._attribution) if outer is not None else self._attribution
        ctx = otel_context.set_value(_ATTRIBUTION_KEY, merged, ctx)
        if _propagate_baggage:
            ctx = _with_baggage(merged, ctx)
        self._tokens.append(otel_context.attach(ctx))
        return merged

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        otel_context.detach(self._tokens.pop())  # type: ignore[arg-type]

    async def __aenter__(self) -> Attribution:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: F) -> F:
        """Decorate ``fn`` so every call runs inside a fresh scope with these fields."""
        attribution = self._attribution
        # A generator's body runs across many resumptions, possibly in other contexts; attaching in one
        # and detaching in another corrupts the context stack, so refuse rather than misattribute.
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                "spendgate.attribute cannot decorate a generator; use `with spendgate.attribute(...)` inside it"
            )
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with AttributionScope(attribution):
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with AttributionScope(attribution):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"spendgate.attribute({', '.join(f'{k}={v!r}' for k, v in self._attribution.as_dict().items())})"


def attribute(
    *,
    user: str | None = None,
    repo: str | None = None,
    team: str | None = None,
    cost_center: str | None = None,
    feature: str | None = None,
    branch: str | None = None,
    tags: Iterable[str] | str | None = None,
) -> AttributionScope:
    """Attribute every LLM span started inside to these fields.

    Use as ``with spendgate.attribute(user="a@b.com", repo="acme-api", feature="rag"):``, as
    ``async with``, or as a decorator on a sync or async function. ``None`` leaves a field to the
    outer block, incoming baggage or the ``configure()`` defaults.
    """
    return AttributionScope(
        make_attribution(
            user=user,
            repo=repo,
            team=team,
            cost_center=cost_center,
            feature=feature,
            branch=branch,
            tags=tags,
        )
    )
