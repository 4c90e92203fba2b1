"""``spendgate keys``: create, list and revoke virtual keys in the key directory file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from spendgate_proxy.keys import DEFAULT_KEYS_FILE, KeyFileError, KeyRecord, create_key, read_key_file, revoke_key

_keys_file = click.option(
    "--keys-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SPENDGATE_KEYS_FILE",
    default=DEFAULT_KEYS_FILE,
    show_default=True,
    help="Key directory file the proxy reads.",
)


def _expiry(value: str | None) -> datetime | None:
    if not value:
        return None
    if value[-1] in "dh" and value[:-1].isdigit():
        amount = int(value[:-1])
        return datetime.now(UTC) + (timedelta(days=amount) if value[-1] == "d" else timedelta(hours=amount))
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: use an ISO 8601 time or a duration like 90d / 12h") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _row(rec: KeyRecord) -> dict[str, object]:
    p = rec.principal
    state = "revoked" if p.revoked_at else "disabled" if p.disabled else "active"
    if state == "active" and p.expires_at and p.expires_at <= datetime.now(UTC):
        state = "expired"
    return {
        "id": p.key_id,
        "prefix": rec.prefix + "…",
        "user": p.user,
        "team": p.team,
        "cost_center": p.cost_center,
        "repo": p.repo,
        "models": list(p.models),
        "state": state,
        "expires_at": p.expires_at.isoformat() if p.expires_at else None,
        "created_at": (rec.created_at or datetime.now(UTC)).isoformat(timespec="seconds"),
    }


@click.group("keys", context_settings={"help_option_names": ["-h", "--help"]})
def keys_group() -> None:
    """Manage virtual keys: one per developer, bound to email, team, cost centre and defaults.

    Keys are shown once, at creation; the file stores only their SHA-256 hashes. Running proxies
    pick up changes within a second.

    \b
    Example:
      spendgate keys create --user ana@acme.com --team platform --cost-center CC-1001
      spendgate keys list
      spendgate keys revoke key_1a2b3c4d5e
    """


@keys_group.command("create")
@_keys_file
@click.option("--user", required=True, help="Developer's email (the SSO identity spend is charged to).")
@click.option("--team", help="Team the spend is charged to.")
@click.option("--cost-center", help="Cost centre the spend is charged to.")
@click.option("--repo", help="Default repository when a request names none.")
@click.option("--model", "models", multiple=True, help="Allow only this model (repeat); default: all.")
@click.option("--expires", help="Expiry: ISO 8601 time or a duration such as 90d or 12h.")
@click.option("--json", "as_json", is_flag=True, help="Print the key and its record as JSON.")
def create_command(
    keys_file: Path,
    user: str,
    team: str | None,
    cost_center: str | None,
    repo: str | None,
    models: tuple[str, ...],
    expires: str | None,
    as_json: bool,
) -> None:
    """Create a key and print it (the only time it is shown).

    \b
    Example:
      spendgate keys create --user ana@acme.com --team platform --repo acme-api --expires 90d
    """
    try:
        key, rec = create_key(
            keys_file,
            user=user,
            team=team,
            cost_center=cost_center,
            repo=repo,
            models=models,
            expires_at=_expiry(expires),
        )
    except (ValueError, KeyFileError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"key": key, **_row(rec)}, indent=2))
        return
    click.echo(key)
    click.echo(
        f"created {rec.principal.key_id} for {user} in {keys_file}; store the key now, it is not shown again", err=True
    )


@keys_group.command("list")
@_keys_file
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_command(keys_file: Path, as_json: bool) -> None:
    """List keys (ids, owners, state; never the keys themselves).

    \b
    Example:
      spendgate keys list --json
    """
    try:
        rows = [_row(r) for r in read_key_file(keys_file)]
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    cols = ["id", "prefix", "user", "team", "cost_center", "repo", "state", "expires_at"]
    table = [[str(r[c] if r[c] is not None else "") for c in cols] for r in rows]
    widths = [max([len(c)] + [len(t[i]) for t in table]) for i, c in enumerate(cols)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for t in table:
        click.echo("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip())


@keys_group.command("revoke")
@_keys_file
@click.argument("key_id")
def revoke_command(keys_file: Path, key_id: str) -> None:
    """Revoke a key by id; proxies refuse it within a second.

    \b
    Example:
      spendgate keys revoke key_1a2b3c4d5e
    """
    try:
        rec = revoke_key(keys_file, key_id)
    except KeyError:
        raise click.ClickException(f"no key with id {key_id!r} in {keys_file} (see `spendgate keys list`)") from None
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"revoked {key_id} ({rec.principal.user})", err=True)
