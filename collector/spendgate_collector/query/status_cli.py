"""``spendgate status``: one screen of what the gateway is doing right now.

Asks a running collector's API for its health (pipeline, store, control plane with the connected
proxies), the month's spend by team, and every budget's state with the verdicts in force. When the
collector knows proxies that budgets do not reach (a lost control stream, or spans from a proxy
holding none: ``proxy_roster.py``), the budgets line says "NOT ENFORCED on N proxies" and names them. Only the
standard library's HTTP client is used (``api_client``), so ``status`` needs no extra.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from spendgate_collector.api_client import ApiClient, ApiUnreachable
from spendgate_collector.money import usd

DEFAULT_API = "http://127.0.0.1:8788"


def _get(client: ApiClient, path: str, params: dict[str, str] | None = None) -> Any:
    try:
        answer = client.send("GET", path, params=params)
    except ApiUnreachable as exc:
        raise click.ClickException(str(exc)) from None
    if answer.status != 200:
        raise click.ClickException(f"collector API answered {answer.status} for {path}: {answer.text(200)}")
    try:
        return answer.json()
    except ValueError:
        raise click.ClickException(f"collector API at {client.base_url} did not answer JSON for {path}") from None


def collect(api_url: str) -> dict[str, Any]:
    """Everything ``status`` shows, as one JSON-ready dict."""
    month = datetime.now(UTC).strftime("%Y-%m")
    # With sign-in on, the operator's admin token ($SPENDGATE_ADMIN_TOKEN) lets the CLI in.
    client = ApiClient(api_url, timeout=10)
    health = _get(client, "/healthz")
    spend = _get(client, "/api/spend", {"month": month, "group_by": "team"})
    budgets = _get(client, "/api/budgets/status")
    return {"month": month, "health": health, "spend": spend.get("rows", []), "budgets": budgets.get("budgets", [])}


def _money(value: float | None) -> str:
    return "n/a" if value is None else usd(value)


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S UTC")


def _not_enforced(health: dict[str, Any]) -> list[str]:
    """The budgets line's suffix and one line per proxy budgets do not reach (empty when all do)."""
    if "control" not in health:
        return [" (the collector's control plane is off: NOT ENFORCED on any proxy)"]
    proxies = health["control"].get("not_enforced") or []
    if not proxies:
        return []
    lines = [f", NOT ENFORCED on {len(proxies)} {'proxy' if len(proxies) == 1 else 'proxies'}:"]
    for p in proxies:
        if p["state"] == "lost":
            what = f"lost its control stream at {_clock(p['since_ms'])}" + (f" (was {p['peer']})" if p["peer"] else "")
            if p["last_span_ms"] > p["since_ms"]:
                what += f"; still serving, last span {_clock(p['last_span_ms'])}"
        else:
            seen = f"since {_clock(p['since_ms'])}, last {_clock(p['last_span_ms'])}"
            what = f"sends spans ({seen}) but holds no control stream"
        lines.append(f"  {p['proxy_id']:<24} {what}")
    lines.append("  (a proxy enforces budgets only while it holds a control stream: docs/control-plane.md)")
    return lines


def render(data: dict[str, Any]) -> str:
    """The human-readable screen."""
    lines = []
    health = data["health"]
    control = health.get("control") or {}
    store = health.get("store") or {}
    lines.append(
        f"collector: {health.get('status', '?')}, store {store.get('location', '?')}"
        f" ({store.get('rows_inserted', 0):,} rows written since start)"
    )
    proxies = control.get("proxies") or []
    lines.append(f"control plane: version {control.get('version', 0)}, {len(proxies)} proxies connected")
    for p in proxies:
        since = datetime.fromtimestamp(p["connected_since_ms"] / 1000, UTC).strftime("%H:%M:%S")
        lines.append(f"  {p['proxy_id']:<24} {p['peer']:<24} since {since} UTC, at version {p['last_version_sent']}")
    total = sum(r.get("cost_usd") or 0 for r in data["spend"])
    lines.append(f"\nspend in {data['month']}: {_money(total)}")
    for row in data["spend"]:
        lines.append(
            f"  {row.get('team') or '(no team)':<24} {_money(row.get('cost_usd')):>12}"
            f"  {row.get('requests', 0):>8,} requests"
        )
    budgets = data["budgets"]
    unenforced = _not_enforced(health)
    lines.append(f"\nbudgets: {len(budgets)}{unenforced[0] if unenforced else ''}")
    lines.extend(unenforced[1:])
    for b in budgets:
        scope = ",".join(f"{k}={v}" for k, v in (b.get("scope") or {}).items()) or "(org)"
        lines.append(
            f"  {b['id']:<16} {scope:<24} {b['period']['kind']:<6} {_money(b['spend_usd']):>10} of "
            f"{_money(b['effective_limit_usd']):>10} ({b.get('percent') or 0:5.1f} %)  {b['state'].upper()}"
        )
        for v in b.get("verdicts") or []:
            what = f"route {v.get('route_from') or '*'} -> {v.get('route_to')}" if v["action"] == "route" else "pause"
            lines.append(f"      verdict: {what} ({v['reason']})")
        for o in b.get("overrides") or []:
            lines.append(f"      override: {o['action']} until {o['until']} by {o['actor']}: {o['reason']}")
    return "\n".join(lines) + "\n"


@click.command("status", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--api", "api_url", default=DEFAULT_API, show_default=True, envvar="SPENDGATE_API", help="Collector query API."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the summary.")
def status_command(api_url: str, as_json: bool) -> None:
    """Show budgets, this month's spend, verdicts in force and connected proxies.

    \b
    Example:
      spendgate status
      spendgate status --api http://collector.internal:8788 --json
    """
    data = collect(api_url)
    click.echo(json.dumps(data, indent=2, ensure_ascii=False) if as_json else render(data), nl=as_json)
