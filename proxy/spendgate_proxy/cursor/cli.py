"""``spendgate cursor ...``: a thin click layer over :mod:`spendgate_proxy.cursor.install`."""

from __future__ import annotations

from pathlib import Path

import click

from spendgate_proxy.cursor.install import DEFAULT_KEY_ENV, HOOK_EVENTS, install_hooks


@click.group("cursor", context_settings={"help_option_names": ["-h", "--help"]})
def cursor_group() -> None:
    """Cursor integration: repo attribution through Cursor hooks."""


@cursor_group.command("install-hooks")
@click.argument("repo_dir", required=False, default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--gateway", help="The gateway's public base URL (reports go to URL/hooks/cursor).")
@click.option(
    "--key-env",
    default=DEFAULT_KEY_ENV,
    show_default=True,
    help="Environment variable that holds the developer's virtual key.",
)
@click.option(
    "--event",
    "events",
    multiple=True,
    help=f"Hook event to register on (repeatable). Default: {', '.join(HOOK_EVENTS)}.",
)
@click.option("--python", default="python3", show_default=True, help="Interpreter Cursor should run the script with.")
@click.option("--store-key", is_flag=True, help="Copy the key's current value into ~/.spendgate/cursor.json (0600).")
def install_hooks_cmd(
    repo_dir: Path, gateway: str | None, key_env: str, events: tuple[str, ...], python: str, store_key: bool
) -> None:
    """Register spendgate's reporting hook in REPO_DIR/.cursor/hooks.json (default: the current directory).

    Other hooks in the file are kept; running it again replaces only spendgate's entries.

    Before each prompt, Cursor runs the hook; it posts the repo (git remote, branch, workspace
    root) to the gateway's POST /hooks/cursor with the developer's virtual key, and that
    developer's calls are charged to the repo for the next cursor.hook_window_s (15 min by default,
    refreshed by every report), on every proxy. The hook never blocks Cursor: 300 ms at most,
    always exit 0. See docs/cursor-attribution.md.

    Example:

        spendgate cursor install-hooks ~/src/acme-api --gateway https://spend.acme.dev
    """
    try:
        result = install_hooks(
            repo_dir, gateway, key_env, events=events or HOOK_EVENTS, python=python, store_key=store_key
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {result.script}")
    verb = "updated" if result.replaced else "registered"
    click.echo(f"{verb} {', '.join(result.events)} in {result.hooks_json}")
    if result.config:
        click.echo(f"settings in {result.config}")
    if not gateway:
        click.echo("note: no --gateway given; the script uses $SPENDGATE_URL or the settings file", err=True)
