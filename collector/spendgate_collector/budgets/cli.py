"""``spendgate budgets set|list|override|rm|status|audit``: a thin click layer over the budget HTTP API.

Every command talks to a running collector (``--api``, default ``http://127.0.0.1:8788``, or
``$SPENDGATE_API``) and prints a readable table or line, or the API's JSON with ``--json``. The
actor recorded in the audit table is ``--actor``, by default the local user name. Errors print one
``Error: ...`` line (naming the field the API rejected) and exit 1. Only the standard library's HTTP
client is used (``api_client``), so these commands need no extra.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import click

from spendgate_collector.api_client import Answer, ApiClient, ApiUnreachable
from spendgate_collector.money import usd

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEFAULT_API = "http://127.0.0.1:8788"
API_ENV = "SPENDGATE_API"
ACTOR_HEADER = "X-Spendgate-Actor"
_SCOPE_OPTIONS = ("developer", "team", "cost_center", "repo", "key_id", "model")


class _Api:
    """The budget routes of one collector (stdlib HTTP: these commands need no extra)."""

    def __init__(self, base_url: str, actor: str) -> None:
        self._client = ApiClient(base_url, timeout=30.0, headers={ACTOR_HEADER: actor})
        self._base = self._client.base_url

    def _send(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Answer:
        try:
            return self._client.send(method, path, body=body, params=params)
        except ApiUnreachable as exc:
            raise click.ClickException(str(exc)) from None

    def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        return self._data(self._send(method, path, body, params))

    def exists(self, path: str) -> Any | None:
        answer = self._send("GET", path)
        return None if answer.status == 404 else self._data(answer)

    def _data(self, answer: Answer) -> Any:
        try:
            data = answer.json()
        except ValueError:
            raise click.ClickException(f"collector API at {self._base} answered {answer.status} without JSON") from None
        if answer.status >= 400:
            message = data.get("error", answer.reason) if isinstance(data, dict) else answer.reason
            field = data.get("field") if isinstance(data, dict) else None
            raise click.ClickException(f"{field}: {message}" if field else str(message))
        return data


def _common(func: Any) -> Any:
    func = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer.")(func)
    func = click.option(
        "--actor", metavar="NAME", help="Who is acting, for the audit table. [default: your user name]"
    )(func)
    func = click.option(
        "--api",
        "api_url",
        metavar="URL",
        envvar=API_ENV,
        default=DEFAULT_API,
        show_default=True,
        help=f"Collector API base URL (or ${API_ENV}).",
    )(func)
    return func


def _api(api_url: str, actor: str | None) -> _Api:
    if not actor:
        try:
            actor = getpass.getuser()
        except Exception:  # no user name in some containers
            actor = "cli"
    return _Api(api_url, actor)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def render(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    return "\n".join([render(headers), render(["-" * w for w in widths]), *(render(r) for r in rows)]) + "\n"


def _scope_text(scope: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in scope.items()) or "(org)"


def _percent(at: float) -> str:
    return f"{at * 100:g} %"


def _thresholds_text(thresholds: list[dict[str, Any]]) -> str:
    parts = []
    for t in thresholds:
        text = f"{t['action']} {_percent(t['at'])}"
        if t["action"] == "route":
            text += f" ({t.get('from') or '*'}→{t['to']})"
        parts.append(text)
    return ", ".join(parts)


def _period_text(period: dict[str, str]) -> str:
    """``2026-11-01 .. 2026-11-30``: first and last local day (the API's ``end`` is exclusive)."""
    last = datetime.fromisoformat(period["end"]) - timedelta(seconds=1)
    return f"{period['start'][:10]} .. {last.date().isoformat()}"


def _money(value: float | None) -> str:
    return "-" if value is None else usd(value)


def parse_threshold(text: str) -> dict[str, Any]:
    """``0.8:alert``, ``110%:pause``, ``1.0:route:claude-opus-4-1->claude-sonnet-4-5`` (or ``1.0:route:to``)."""
    parts = text.split(":", 2)
    if len(parts) < 2:
        raise click.BadParameter(f"expected AT:ACTION, e.g. 0.8:alert or 1.1:pause; got {text!r}")
    at_text, action = parts[0].strip(), parts[1].strip()
    try:
        at = float(at_text[:-1]) / 100 if at_text.endswith("%") else float(at_text)
    except ValueError:
        raise click.BadParameter(f"{at_text!r} is not a fraction (0.8) or a percentage (80%)") from None
    threshold: dict[str, Any] = {"at": at, "action": action}
    if len(parts) == 3:
        models = parts[2]
        if "->" in models:
            source, _, target = models.partition("->")
            threshold["from"] = source.strip() or None
            threshold["to"] = target.strip()
        else:
            threshold["to"] = models.strip()
    return threshold


@click.group("budgets", context_settings=CONTEXT_SETTINGS)
def budgets_group() -> None:
    """Budgets: limits per scope and period that alert, pause or route when crossed.

    Every command talks to a running collector's API (--api, default http://127.0.0.1:8788).

    \b
    Example:
      spendgate budgets set platform --team platform --limit 2000 --period month --timezone Europe/Berlin
      spendgate budgets status
      spendgate budgets override platform --raise-to 2500 --for 3d --reason "release week"
    """


@budgets_group.command("set", context_settings=CONTEXT_SETTINGS)
@click.argument("budget_id", metavar="ID")
@click.option("--name", help="Display name. [default: the id]")
@click.option("--limit", "limit_usd", type=float, metavar="USD", help="Limit per period in USD (required when new).")
@click.option("--period", type=click.Choice(["day", "week", "month"]), help="Calendar period. [default: month]")
@click.option("--timezone", metavar="TZ", help="IANA time zone of the period. [default: the collector's]")
@click.option("--developer", "--user", "developer", metavar="EMAIL", help="Scope: this developer.")
@click.option("--team", metavar="TEAM", help="Scope: this team.")
@click.option("--cost-center", metavar="CC", help="Scope: this cost centre.")
@click.option("--repo", metavar="REPO", help="Scope: this repository.")
@click.option("--key-id", metavar="KEY", help="Scope: this virtual key id.")
@click.option("--model", metavar="MODEL", help="Scope: this model.")
@click.option("--org", is_flag=True, help="Scope: the whole organisation (clears the scope).")
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="AT:ACTION[:FROM->TO]",
    help="Repeat for each; replaces all. [default: 0.8:alert, 1.1:pause]",
)
@click.option("--owner", metavar="CONTACT", help="Who grants overrides; shown to a paused developer.")
@_common
def set_command(
    budget_id: str,
    thresholds: tuple[str, ...],
    org: bool,
    api_url: str,
    actor: str | None,
    as_json: bool,
    **fields: Any,
) -> None:
    """Create a budget, or change some fields of an existing one (the rest are kept).

    Giving any scope option (or --org) replaces the whole scope; --threshold replaces all thresholds.

    \b
    Example:
      spendgate budgets set platform --team platform --limit 2000
      spendgate budgets set ana-daily --developer ana@acme.com --limit 50 --period day --timezone Europe/Berlin
      spendgate budgets set opus --team platform --limit 500 \\
          --threshold 0.8:alert --threshold 1.0:route:claude-opus-4-1->claude-sonnet-4-5 --threshold 1.2:pause
      spendgate budgets set platform --limit 2500    # raise the limit, keep everything else
    """
    api = _api(api_url, actor)
    current = api.exists(f"/api/budgets/{budget_id}")
    body: dict[str, Any] = {}
    if current is not None:
        body = {k: current[k] for k in ("name", "scope", "period", "timezone", "limit_usd", "thresholds", "owner")}
    scope = {k: fields.pop(k) for k in _SCOPE_OPTIONS}
    if org and any(scope.values()):
        raise click.ClickException("--org: the whole organisation takes no other scope option")
    if org or any(scope.values()):
        body["scope"] = {k: v for k, v in scope.items() if v}
    for key, value in fields.items():
        if value is not None:
            body[key] = value
    if thresholds:
        body["thresholds"] = [parse_threshold(t) for t in thresholds]
    if current is None and "limit_usd" not in body:
        raise click.ClickException("--limit: a new budget needs a limit in USD")
    data = api.call("PUT", f"/api/budgets/{budget_id}", body)
    if as_json:
        _echo_json(data)
        return
    b = data["budget"]
    verb = "created" if data["created"] else "updated"
    click.echo(
        f"{verb} budget {b['id']}: {_scope_text(b['scope'])}, {_money(b['limit_usd'])} per {b['period']} "
        f"({b['timezone']}), {_thresholds_text(b['thresholds'])}; now {data['status']['state']}"
    )


@budgets_group.command("list", context_settings=CONTEXT_SETTINGS)
@_common
def list_command(api_url: str, actor: str | None, as_json: bool) -> None:
    """List every budget's definition.

    \b
    Example:
      spendgate budgets list
      spendgate budgets list --json
    """
    data = _api(api_url, actor).call("GET", "/api/budgets")
    if as_json:
        _echo_json(data)
        return
    rows = [
        [
            b["id"],
            b["name"],
            _scope_text(b["scope"]),
            f"{b['period']} ({b['timezone']})",
            _money(b["limit_usd"]),
            _thresholds_text(b["thresholds"]),
            b.get("owner") or "",
        ]
        for b in data["budgets"]
    ]
    click.echo(_table(["ID", "NAME", "SCOPE", "PERIOD", "LIMIT", "THRESHOLDS", "OWNER"], rows, right=(4,)), nl=False)


@budgets_group.command("status", context_settings=CONTEXT_SETTINGS)
@click.argument("budget_id", metavar="[ID]", required=False)
@_common
def status_command(budget_id: str | None, api_url: str, actor: str | None, as_json: bool) -> None:
    """Show each budget's current period, spend, limit, state and verdicts in force.

    \b
    Example:
      spendgate budgets status
      spendgate budgets status platform --json
    """
    api = _api(api_url, actor)
    if budget_id:
        rows_data = [api.call("GET", f"/api/budgets/{budget_id}")["status"]]
        data: Any = rows_data[0]
    else:
        data = api.call("GET", "/api/budgets/status")
        rows_data = data["budgets"]
    if as_json:
        _echo_json(data)
        return
    rows = []
    for s in rows_data:
        effective = s["effective_limit_usd"]
        limit = _money(s["limit_usd"])
        if effective is None:
            limit += " (lifted)"
        elif effective != s["limit_usd"]:
            limit += f" → {_money(effective)}"
        rows.append(
            [
                s["id"],
                _scope_text(s["scope"]),
                _period_text(s["period"]),
                _money(s["spend_usd"]),
                limit,
                "-" if s["percent"] is None else f"{s['percent']:g} %",
                s["state"],
                ", ".join(sorted({v["action"] for v in s["verdicts"]})) or "-",
            ]
        )
    headers = ["ID", "SCOPE", "PERIOD", "SPEND", "LIMIT", "USED", "STATE", "VERDICTS"]
    click.echo(_table(headers, rows, right=(3, 5)), nl=False)


@budgets_group.command("override", context_settings=CONTEXT_SETTINGS)
@click.argument("budget_id", metavar="ID")
@click.option("--lift", is_flag=True, help="No threshold applies while the override lasts.")
@click.option("--raise-to", "raise_to", type=float, metavar="USD", help="The limit while the override lasts.")
@click.option("--until", metavar="TIME", help="ISO 8601 end; without an offset, in the budget's time zone.")
@click.option("--for", "duration", metavar="DURATION", help="How long: 30m, 4h, 2d, 1w. [default: to period end]")
@click.option("--reason", help="Why (kept in the audit table).")
@click.option("--remove", "remove_id", metavar="OVERRIDE_ID", help="End this override now instead.")
@_common
def override_command(
    budget_id: str,
    lift: bool,
    raise_to: float | None,
    until: str | None,
    duration: str | None,
    reason: str | None,
    remove_id: str | None,
    api_url: str,
    actor: str | None,
    as_json: bool,
) -> None:
    """Lift a budget, or raise its limit, until a time; or end an override early with --remove.

    \b
    Example:
      spendgate budgets override platform --lift --for 4h --reason "finish the payments refactor"
      spendgate budgets override platform --raise-to 2500 --until 2026-11-30T18:00 --reason "release week"
      spendgate budgets override platform --remove ov-3f2a91c0
    """
    api = _api(api_url, actor)
    if remove_id:
        if lift or raise_to is not None or until or duration or reason:
            raise click.ClickException("--remove: takes no other override option")
        data = api.call("DELETE", f"/api/budgets/{budget_id}/overrides/{remove_id}")
        if as_json:
            _echo_json(data)
        else:
            click.echo(f"removed override {remove_id} of {budget_id}; now {data['status']['state']}")
        return
    if lift == (raise_to is not None):
        raise click.ClickException("--lift or --raise-to: give exactly one")
    if not reason:
        raise click.ClickException("--reason: say why (it is kept in the audit table)")
    body: dict[str, Any] = {"action": "lift" if lift else "raise", "reason": reason}
    if raise_to is not None:
        body["limit_usd"] = raise_to
    if until:
        body["until"] = until
    if duration:
        body["for"] = duration
    data = api.call("POST", f"/api/budgets/{budget_id}/overrides", body)
    if as_json:
        _echo_json(data)
        return
    o = data["override"]
    what = "lifted" if o["action"] == "lift" else f"raised to {_money(o['limit_usd'])}"
    click.echo(f"{budget_id} {what} until {o['until']} (override {o['id']}); now {data['status']['state']}")


@budgets_group.command("rm", context_settings=CONTEXT_SETTINGS)
@click.argument("budget_id", metavar="ID")
@_common
def rm_command(budget_id: str, api_url: str, actor: str | None, as_json: bool) -> None:
    """Delete a budget; any pause or route verdict it holds is lifted at once.

    \b
    Example:
      spendgate budgets rm platform
    """
    data = _api(api_url, actor).call("DELETE", f"/api/budgets/{budget_id}")
    if as_json:
        _echo_json(data)
    else:
        click.echo(f"deleted budget {budget_id}")


@budgets_group.command("audit", context_settings=CONTEXT_SETTINGS)
@click.option("--budget", "budget_id", metavar="ID", help="Only this budget.")
@click.option("--action", metavar="ACTION", help="Only this action (budget, override, webhook, budget.transition...).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Lines, newest first.")
@_common
def audit_command(
    budget_id: str | None, action: str | None, limit: int, api_url: str, actor: str | None, as_json: bool
) -> None:
    """Show the audit trail: budget changes, overrides, transitions, webhook outcomes.

    \b
    Example:
      spendgate budgets audit --budget platform
    """
    params: dict[str, Any] = {"limit": limit}
    if budget_id:
        params["budget"] = budget_id
    if action:
        params["action"] = action
    data = _api(api_url, actor).call("GET", "/api/audit", params=params)
    if as_json:
        _echo_json(data)
        return
    rows = [
        [e["at"], e["actor"], e["action"], e["budget_id"] or "", _audit_summary(e["action"], e["details"])]
        for e in data["entries"]
    ]
    click.echo(_table(["AT", "ACTOR", "ACTION", "BUDGET", "DETAILS"], rows), nl=False)


def _audit_summary(action: str, details: dict[str, Any]) -> str:
    if action == "budget.transition":
        return f"{details.get('from')} → {details.get('to')} ({details.get('cause')}): {details.get('reason')}"
    if action.startswith("override."):
        what = "lift" if details.get("action") == "lift" else f"raise to {_money(details.get('limit_usd'))}"
        return f"{details.get('id')}: {what} until {details.get('until')}: {details.get('reason')}"
    if action.startswith("webhook."):
        transition = details.get("transition") or {}
        return (
            f"{details.get('url')} {transition.get('from')} → {transition.get('to')}: "
            f"{details.get('attempts')} attempt(s){'; ' + details['error'] if details.get('error') else ''}"
        )
    if action in ("budget.created", "budget.updated"):
        after = details.get("after") or {}
        return f"{_scope_text(after.get('scope') or {})}, {_money(after.get('limit_usd'))} per {after.get('period')}"
    return ""
