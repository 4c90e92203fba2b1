"""What a budget and an override are, and how one is read (and checked) from JSON or YAML.

``parse_budget`` and ``parse_override`` turn a plain mapping (an HTTP body, a config entry) into a
frozen ``Budget`` / ``Override`` or raise ``BudgetError`` naming the offending field with a dotted
path (``thresholds.1.to``), so the API can answer 400 and the config loader can say which entry.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import CollectorError

PERIODS = ("day", "week", "month")
PERIOD_ADJECTIVE = {"day": "daily", "week": "weekly", "month": "monthly"}
ALERT, PAUSE, ROUTE = "alert", "pause", "route"
ACTIONS = (ALERT, PAUSE, ROUTE)
OK = "ok"
LIFT, RAISE = "lift", "raise"

SCOPE_FIELDS = ("developer", "team", "cost_center", "repo", "key_id", "model")
"""Scope fields in matching order; each is the ``SpendRecord`` attribute of the same name."""
_SCOPE_ALIASES = {"user": "developer"}
"""``user`` is what the verdict scope and the key directory call a developer."""

# Alert at 80 %, pause at 110 %: the extra 10 % absorbs requests in flight and the export delay
# (DESIGN.md, "The flow"), so a developer is not paused by spend that was never made.
DEFAULT_THRESHOLDS: tuple[tuple[float, str], ...] = ((0.8, ALERT), (1.1, PAUSE))

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_RESERVED_IDS = {"status"}  # /api/budgets/status is a route, not a budget
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
MAX_TEXT = 500


class BudgetError(CollectorError):
    """A budget or override is invalid; ``field`` is the dotted path of what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class BudgetNotFound(CollectorError):
    """No budget (or override) with that id."""


@dataclass(frozen=True, slots=True)
class Threshold:
    """At ``at`` x the effective limit, do ``action``; ``route`` rewrites ``route_from`` to ``route_to``."""

    at: float
    action: str
    route_from: str | None = None
    """For ``route``: the requested model to rewrite; None = every model in scope."""
    route_to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at, "action": self.action}
        if self.action == ROUTE:
            out["from"] = self.route_from
            out["to"] = self.route_to
        return out


@dataclass(frozen=True, slots=True)
class Budget:
    """A spend limit on a scope for a calendar period in a time zone, with thresholds and actions."""

    id: str
    name: str
    scope: tuple[tuple[str, str], ...]
    """``(field, value)`` pairs in ``SCOPE_FIELDS`` order; empty = the whole organisation."""
    period: str
    timezone: str
    limit_usd: float
    thresholds: tuple[Threshold, ...]
    owner: str | None = None
    """Who to ask for an override; named in the verdict a paused developer sees."""

    @property
    def scope_dict(self) -> dict[str, str]:
        return dict(self.scope)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope_dict,
            "period": self.period,
            "timezone": self.timezone,
            "limit_usd": self.limit_usd,
            "thresholds": [t.to_dict() for t in self.thresholds],
            "owner": self.owner,
        }

    def describe_scope(self) -> str:
        """``team platform``, ``team platform, repo acme-api``, or ``the organisation``."""
        if not self.scope:
            return "the organisation"
        return ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in self.scope)


@dataclass(frozen=True, slots=True)
class Override:
    """Lift a budget (no thresholds apply) or raise its limit, until a time; who and why are kept."""

    id: str
    budget_id: str
    action: str
    """``lift`` or ``raise``."""
    until_ns: int
    actor: str
    reason: str
    created_ns: int
    limit_usd: float | None = None
    """For ``raise``: the limit in force while the override lasts."""

    def active(self, now_ns: int) -> bool:
        return now_ns < self.until_ns

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "budget_id": self.budget_id,
            "action": self.action,
            "limit_usd": self.limit_usd,
            "until": iso_ns(self.until_ns),
            "actor": self.actor,
            "reason": self.reason,
            "created": iso_ns(self.created_ns),
        }


@dataclass(frozen=True, slots=True)
class WebhookSpec:
    """Where transitions are posted: ``json`` (generic) or ``slack`` (``{"text": ...}``)."""

    url: str
    format: str = "json"
    headers: tuple[tuple[str, str], ...] = ()
    max_attempts: int = 5
    deadline_s: float = 300.0
    timeout_s: float = 10.0
    budgets: tuple[str, ...] = field(default=())
    """Only transitions of these budget ids; empty = every budget."""


def iso_ns(ns: int, tz: ZoneInfo | None = None) -> str:
    """Unix nanoseconds → ISO 8601 with offset (UTC unless ``tz``), to the second."""
    dt = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    return (dt.astimezone(tz) if tz else dt).isoformat()


# --- parsing


def _text(value: Any, field: str, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise BudgetError(field, "is required")
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise BudgetError(field, f"must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if len(text) > MAX_TEXT:
        raise BudgetError(field, f"must be at most {MAX_TEXT} characters")
    if required and not text:
        raise BudgetError(field, "is required")
    return text or None


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or value is None:
        raise BudgetError(field, "must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BudgetError(field, f"must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise BudgetError(field, "must be a finite number")
    return number


def parse_timezone(value: Any, field: str = "timezone") -> str:
    """An IANA zone name (``Europe/Berlin``); raise ``BudgetError`` when zoneinfo does not know it."""
    name = _text(value, field, required=True)
    assert name is not None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BudgetError(field, f"unknown IANA time zone {name!r} (e.g. UTC, Europe/Berlin)") from None
    return name


def _parse_scope(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise BudgetError("scope", "must be a mapping of field → value, e.g. {team: platform}")
    scope: dict[str, str] = {}
    for raw_name, raw_value in value.items():
        name = _SCOPE_ALIASES.get(str(raw_name), str(raw_name))
        if name not in SCOPE_FIELDS:
            raise BudgetError(f"scope.{raw_name}", f"unknown scope field; allowed: user, {', '.join(SCOPE_FIELDS)}")
        text = _text(raw_value, f"scope.{raw_name}")
        if text is None:
            continue  # an empty value means "any", the same as leaving the field out
        if name in scope and scope[name] != text:
            raise BudgetError(f"scope.{raw_name}", "developer and user are the same field; give one")
        scope[name] = text
    return tuple((name, scope[name]) for name in SCOPE_FIELDS if name in scope)


def _parse_thresholds(value: Any) -> tuple[Threshold, ...]:
    if value is None:
        return tuple(Threshold(at, action) for at, action in DEFAULT_THRESHOLDS)
    if not isinstance(value, list | tuple) or not value:
        raise BudgetError("thresholds", "must be a non-empty list of {at, action}")
    thresholds: list[Threshold] = []
    for i, item in enumerate(value):
        where = f"thresholds.{i}"
        if not isinstance(item, Mapping):
            raise BudgetError(where, "must be a mapping with 'at' and 'action'")
        unknown = set(item) - {"at", "action", "from", "to"}
        if unknown:
            raise BudgetError(f"{where}.{sorted(unknown)[0]}", "unknown field; allowed: at, action, from, to")
        at = _number(item.get("at"), f"{where}.at")
        if not 0 < at <= 100:
            raise BudgetError(f"{where}.at", "must be a fraction of the limit above 0 (0.8 = 80 %)")
        action = item.get("action")
        if action not in ACTIONS:
            raise BudgetError(f"{where}.action", f"must be one of {', '.join(ACTIONS)}, got {action!r}")
        route_from = _text(item.get("from"), f"{where}.from")
        route_to = _text(item.get("to"), f"{where}.to")
        if action == ROUTE:
            if route_to is None:
                raise BudgetError(f"{where}.to", "a route threshold needs 'to', the model served instead")
            if route_from == route_to:
                raise BudgetError(f"{where}.to", "must differ from 'from'")
        elif route_from is not None or route_to is not None:
            raise BudgetError(f"{where}.{'from' if route_from else 'to'}", "only a route threshold takes from/to")
        if thresholds and at <= thresholds[-1].at:
            raise BudgetError(f"{where}.at", f"thresholds must increase: {at} is not above {thresholds[-1].at}")
        thresholds.append(Threshold(at, action, route_from, route_to))
    # One verdict per action and period (its id is <budget>:<period start>:<action>).
    for action in (PAUSE, ROUTE):
        positions = [i for i, t in enumerate(thresholds) if t.action == action]
        if len(positions) > 1:
            raise BudgetError(f"thresholds.{positions[1]}.action", f"a budget takes at most one {action} threshold")
    return tuple(thresholds)


_BUDGET_FIELDS = {"id", "name", "scope", "period", "timezone", "limit_usd", "thresholds", "owner"}


def parse_budget(data: Any, *, default_timezone: str = "UTC", budget_id: str | None = None) -> Budget:
    """Read one budget; ``budget_id`` (from the URL) wins over, and must agree with, ``data["id"]``."""
    if not isinstance(data, Mapping):
        raise BudgetError("(body)", "a budget must be a JSON object")
    unknown = set(data) - _BUDGET_FIELDS - {"actor"}
    if unknown:
        raise BudgetError(sorted(unknown)[0], f"unknown field; allowed: {', '.join(sorted(_BUDGET_FIELDS))}")
    body_id = _text(data.get("id"), "id")
    if budget_id is not None and body_id is not None and body_id != budget_id:
        raise BudgetError("id", f"the body says {body_id!r} but the URL says {budget_id!r}")
    bid = budget_id or body_id
    if bid is None:
        raise BudgetError("id", "is required")
    if not _ID_RE.match(bid) or bid in _RESERVED_IDS:
        raise BudgetError("id", "must be a slug: lowercase letters, digits, '.', '_', '-' (1-64), not 'status'")
    period = data.get("period", "month")
    if period not in PERIODS:
        raise BudgetError("period", f"must be one of {', '.join(PERIODS)}, got {period!r}")
    if "limit_usd" not in data:
        raise BudgetError("limit_usd", "is required")
    limit = _number(data.get("limit_usd"), "limit_usd")
    if limit <= 0:
        raise BudgetError("limit_usd", f"must be above 0, got {limit}")
    return Budget(
        id=bid,
        name=_text(data.get("name"), "name") or bid,
        scope=_parse_scope(data.get("scope")),
        period=period,
        timezone=parse_timezone(data.get("timezone") or default_timezone),
        limit_usd=limit,
        thresholds=_parse_thresholds(data.get("thresholds")),
        owner=_text(data.get("owner"), "owner"),
    )


def parse_duration(text: str, field: str) -> timedelta:
    """``90s``, ``30m``, ``4h``, ``2d``, ``1w`` → timedelta."""
    match = _DURATION_RE.match(text.strip())
    if not match:
        raise BudgetError(field, f"expected a duration like 30m, 4h, 2d; got {text!r}")
    return timedelta(seconds=float(match.group(1)) * _DURATION_UNITS[match.group(2)])


def parse_instant(value: Any, field: str, zone: ZoneInfo) -> int:
    """ISO 8601 → Unix ns; a time without an offset is read in the budget's time zone ``zone``."""
    text = _text(value, field, required=True)
    assert text is not None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BudgetError(field, f"expected an ISO 8601 time like 2026-11-30T18:00:00+01:00, got {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    return int(dt.timestamp() * 1_000_000_000)


_OVERRIDE_FIELDS = {"action", "limit_usd", "until", "for", "reason", "actor"}


def parse_override(
    data: Any, budget: Budget, *, actor: str, now_ns: int, period_end_ns: int, override_id: str | None = None
) -> Override:
    """Read one override of ``budget``; without ``until`` or ``for`` it lasts to the period's end."""
    if not isinstance(data, Mapping):
        raise BudgetError("(body)", "an override must be a JSON object")
    unknown = set(data) - _OVERRIDE_FIELDS
    if unknown:
        raise BudgetError(sorted(unknown)[0], f"unknown field; allowed: {', '.join(sorted(_OVERRIDE_FIELDS))}")
    action = data.get("action")
    if action not in (LIFT, RAISE):
        raise BudgetError("action", f"must be 'lift' (no enforcement) or 'raise' (a higher limit), got {action!r}")
    limit: float | None = None
    if action == RAISE:
        if data.get("limit_usd") is None:
            raise BudgetError("limit_usd", "a raise needs the new limit")
        limit = _number(data["limit_usd"], "limit_usd")
        if limit <= budget.limit_usd:
            raise BudgetError("limit_usd", f"must be above the budget's limit of {budget.limit_usd}")
    elif data.get("limit_usd") is not None:
        raise BudgetError("limit_usd", "a lift takes no limit (it lifts every threshold)")
    if data.get("until") is not None and data.get("for") is not None:
        raise BudgetError("until", "give either 'until' or 'for'")
    if data.get("until") is not None:
        until_ns = parse_instant(data["until"], "until", budget.zone)
    elif data.get("for") is not None:
        until_ns = now_ns + int(parse_duration(str(data["for"]), "for").total_seconds() * 1_000_000_000)
    else:
        until_ns = period_end_ns
    if until_ns <= now_ns:
        raise BudgetError("until" if data.get("until") is not None else "for", "must be in the future")
    reason = _text(data.get("reason"), "reason", required=True)
    assert reason is not None
    return Override(
        id=override_id or "ov-" + secrets.token_hex(4),
        budget_id=budget.id,
        action=action,
        until_ns=until_ns,
        actor=actor,
        reason=reason,
        created_ns=now_ns,
        limit_usd=limit,
    )


def parse_webhook(data: Any, where: str = "webhooks") -> WebhookSpec:
    """One webhook entry of the config (``url``, ``format``, ``headers``, retry bounds, ``budgets``)."""
    if not isinstance(data, Mapping):
        raise BudgetError(where, "must be a mapping with at least 'url'")
    allowed = {"url", "format", "headers", "max_attempts", "deadline_s", "timeout_s", "budgets"}
    unknown = set(data) - allowed
    if unknown:
        raise BudgetError(f"{where}.{sorted(unknown)[0]}", f"unknown field; allowed: {', '.join(sorted(allowed))}")
    url = _text(data.get("url"), f"{where}.url", required=True)
    assert url is not None
    if not url.startswith(("http://", "https://")):
        raise BudgetError(f"{where}.url", "must be an http:// or https:// URL")
    fmt = data.get("format", "json")
    if fmt not in ("json", "slack"):
        raise BudgetError(f"{where}.format", f"must be 'json' or 'slack', got {fmt!r}")
    headers = data.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise BudgetError(f"{where}.headers", "must be a mapping of header → value")
    attempts = _number(data.get("max_attempts", 5), f"{where}.max_attempts")
    if attempts < 1 or attempts != int(attempts):
        raise BudgetError(f"{where}.max_attempts", "must be a whole number of at least 1")
    deadline = _number(data.get("deadline_s", 300.0), f"{where}.deadline_s")
    timeout = _number(data.get("timeout_s", 10.0), f"{where}.timeout_s")
    if deadline <= 0 or timeout <= 0:
        raise BudgetError(f"{where}.{'deadline_s' if deadline <= 0 else 'timeout_s'}", "must be above 0")
    budgets = data.get("budgets") or []
    if not isinstance(budgets, list | tuple):
        raise BudgetError(f"{where}.budgets", "must be a list of budget ids")
    return WebhookSpec(
        url=url,
        format=fmt,
        headers=tuple((str(k), str(v)) for k, v in headers.items()),
        max_attempts=int(attempts),
        deadline_s=deadline,
        timeout_s=timeout,
        budgets=tuple(str(b) for b in budgets),
    )
