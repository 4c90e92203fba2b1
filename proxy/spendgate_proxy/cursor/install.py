"""Install the Cursor hook into a repo: merge ``.cursor/hooks.json`` and write the reporting script.

Project-level hooks are what Cursor loads per workspace, so each repo that should be attributed
gets its own copy (commit it and the whole team reports). Existing hooks are kept: only entries
that run our script are replaced, so re-running the installer is idempotent. The developer's own
settings (gateway URL, which variable holds the key) go to ``~/.spendgate/cursor.json``, never
into the repo.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

HOOK_EVENTS: tuple[str, ...] = ("beforeSubmitPrompt", "afterFileEdit")
"""Events the script is registered on. ``beforeSubmitPrompt`` fires before the first LLM call of
every turn (the report is in the window when the request arrives); ``afterFileEdit`` fires during
long agent turns and keeps the window fresh. Both are observational (no permission reply needed)
and, as reported, carry ``workspace_roots`` like every hook event. Blocking events such as
``beforeShellExecution`` are avoided on purpose: a wrong reply there could stop the agent."""

SCRIPT_RELPATH = ".cursor/hooks/spendgate-report.py"
HOOKS_RELPATH = ".cursor/hooks.json"
SCRIPT_MARKER = "spendgate-report.py"
"""Entries whose command contains this are ours: replaced on re-install, everything else kept."""

DEFAULT_KEY_ENV = "SPENDGATE_KEY"


def script_source() -> str:
    """The hook script exactly as it is installed (``spendgate_proxy/cursor/hook_script.py``)."""
    return resources.files("spendgate_proxy.cursor").joinpath("hook_script.py").read_text(encoding="utf-8")


def default_config_path() -> Path:
    override = os.environ.get("SPENDGATE_CURSOR_CONFIG")
    return Path(override) if override else Path.home() / ".spendgate" / "cursor.json"


@dataclass(frozen=True, slots=True)
class InstallResult:
    """What the installer wrote."""

    hooks_json: Path
    script: Path
    config: Path | None
    events: tuple[str, ...]
    replaced: int
    """How many earlier spendgate entries were replaced (non-zero on a re-install)."""


def hook_command(gateway: str | None, python: str = "python3") -> str:
    """The command line registered in hooks.json (project hooks run from the project root)."""
    parts = [python, SCRIPT_RELPATH]
    if gateway:
        parts += ["--gateway", gateway]
    return shlex.join(parts)


def merge_hooks(existing: dict[str, Any], command: str, events: Sequence[str]) -> tuple[dict[str, Any], int]:
    """``existing`` hooks.json content with our command registered on ``events``; others untouched.

    Raises ``ValueError`` when the file's shape is not the documented ``{"version", "hooks": {event:
    [entry, ...]}}``, rather than overwrite something we do not understand.
    """
    merged = dict(existing)
    merged.setdefault("version", 1)
    hooks = merged.get("hooks", {})
    if not isinstance(hooks, dict):
        raise ValueError(f"{HOOKS_RELPATH}: 'hooks' is {type(hooks).__name__}, expected an object")
    hooks = dict(hooks)
    replaced = 0
    for event in events:
        entries = hooks.get(event, [])
        if not isinstance(entries, list):
            raise ValueError(f"{HOOKS_RELPATH}: hooks.{event} is {type(entries).__name__}, expected a list")
        kept = [e for e in entries if not (isinstance(e, dict) and SCRIPT_MARKER in str(e.get("command", "")))]
        replaced += len(entries) - len(kept)
        hooks[event] = [*kept, {"command": command}]
    merged["hooks"] = hooks
    return merged, replaced


def install_hooks(
    repo_dir: str | os.PathLike[str],
    gateway: str | None,
    key_env: str = DEFAULT_KEY_ENV,
    *,
    events: Sequence[str] = HOOK_EVENTS,
    python: str = "python3",
    config_path: str | os.PathLike[str] | None = None,
    store_key: bool = False,
    write_user_config: bool = True,
) -> InstallResult:
    """Write the script and merge hooks.json under ``repo_dir``; record the developer's settings.

    ``store_key`` copies the current value of ``$key_env`` into the user config (mode 0600) for
    Cursor sessions started outside a shell; otherwise only the variable's name is recorded.
    """
    root = Path(repo_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    hooks_path = root / HOOKS_RELPATH
    existing: dict[str, Any] = {}
    if hooks_path.exists():
        try:
            existing = json.loads(hooks_path.read_text(encoding="utf-8") or "{}")
        except ValueError as exc:
            raise ValueError(f"{hooks_path}: not valid JSON ({exc}); fix or remove it first") from exc
        if not isinstance(existing, dict):
            raise ValueError(f"{hooks_path}: expected a JSON object")
    merged, replaced = merge_hooks(existing, hook_command(gateway, python), events)

    script_path = root / SCRIPT_RELPATH
    script_path.parent.mkdir(parents=True, exist_ok=True)
    script_path.write_text(script_source(), encoding="utf-8")
    script_path.chmod(0o755)
    hooks_path.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")

    written_config: Path | None = None
    if write_user_config:
        written_config = _write_user_config(
            Path(config_path) if config_path else default_config_path(), gateway, key_env, store_key
        )
    return InstallResult(hooks_path, script_path, written_config, tuple(events), replaced)


def _write_user_config(path: Path, gateway: str | None, key_env: str, store_key: bool) -> Path:
    config: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            config = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            config = {}
    if gateway:
        config["gateway"] = gateway
    config["key_env"] = key_env
    if store_key:
        key = os.environ.get(key_env)
        if not key:
            raise ValueError(f"--store-key: ${key_env} is not set")
        config["key"] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 before anything is written: it may hold a key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return path
