#!/usr/bin/env python3
# ruff: noqa: UP017 - runs under the system python3 (3.8+): datetime.UTC is 3.11+
"""spendgate's Cursor hook: tell the gateway which repo and branch this developer is working in.

This file is copied as-is to ``.cursor/hooks/spendgate-report.py`` by ``spendgate cursor
install-hooks`` and runs under the system ``python3`` (3.8+) with the standard library only.

Cursor runs it on the hook events listed in ``.cursor/hooks.json`` with the event JSON on stdin
(``conversation_id``, ``generation_id``, ``model``, ``workspace_roots``, ``hook_event_name``,
sometimes ``user_email``). It resolves the git remote (normalised to ``https://host/owner/name``)
and branch of the first workspace root and POSTs a small report to ``{gateway}/hooks/cursor`` with
the developer's virtual key as ``Authorization: Bearer``. The gateway joins the report to that
developer's LLM calls in a short window.

Where the gateway URL and key come from (first found wins):

- URL: ``$SPENDGATE_URL``, then ``"gateway"`` in the config file, then ``--gateway URL`` on the
  command line (what install-hooks writes into hooks.json, so a team shares it).
- key: ``$SPENDGATE_KEY``, then the variable named by ``"key_env"`` in the config file, then
  ``"key"`` in the config file (written only by ``install-hooks --store-key``: Cursor started from
  a desktop launcher does not see shell variables).
- config file: ``$SPENDGATE_CURSOR_CONFIG``, else ``~/.spendgate/cursor.json``.

It never blocks the developer: all work shares one deadline (:data:`TOTAL_TIMEOUT_S`), runs in a
daemon thread the main thread stops waiting for, and the process exits 0 whatever happens. It
prints only the reply Cursor's hook protocol expects (``{"continue": true}`` for
``beforeSubmitPrompt``, ``{}`` otherwise, which observational hooks ignore) and nothing on
failure: stderr is silenced.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import subprocess
import sys
import threading
import time

TOTAL_TIMEOUT_S = 0.3
"""Everything (stdin, git, the POST) must finish inside this, or the report is dropped."""

GIT_TIMEOUT_S = 0.1
"""Per git command: a healthy ``git config`` / ``rev-parse`` takes a few ms."""

ENDPOINT_PATH = "/hooks/cursor"
MAX_STDIN_BYTES = 1 << 20  # events are small; never read an unbounded stream


def normalise_remote_url(url: str) -> str:
    """``git@github.com:acme/api.git`` -> ``https://github.com/acme/api``; credentials dropped.

    The one copy of this rule: ``spendgate_proxy.attribution.workspace`` imports it from here, so keep
    it standard-library only (this file runs without spendgate installed).
    """
    url = url.strip().rstrip(".,;")
    scp = re.match(r"^[\w.-]+@([\w.-]+):(?!//)(.+)$", url)
    if scp:
        host, path = scp.groups()
    else:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if not parts.hostname:
            return url
        host, path = parts.hostname, parts.path
        if parts.scheme in ("http", "https") and parts.port:
            host = f"{host}:{parts.port}"
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[:-4]
    return f"https://{host.lower()}/{path}"


def _git(root: str, args: list, deadline: float) -> str | None:
    remaining = min(GIT_TIMEOUT_S, deadline - time.monotonic())
    if remaining <= 0:
        return None
    try:
        out = subprocess.run(
            ["git", "-C", root, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=remaining,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = out.stdout.decode("utf-8", "replace").strip()
    return value if out.returncode == 0 and value else None


def _load_config() -> dict:
    path = os.environ.get("SPENDGATE_CURSOR_CONFIG") or os.path.join(
        os.path.expanduser("~"), ".spendgate", "cursor.json"
    )
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _gateway_and_key(argv: list) -> tuple:
    config = _load_config()
    gateway = os.environ.get("SPENDGATE_URL") or config.get("gateway")
    if not gateway and "--gateway" in argv:
        i = argv.index("--gateway")
        gateway = argv[i + 1] if i + 1 < len(argv) else None
    key = os.environ.get("SPENDGATE_KEY")
    if not key and isinstance(config.get("key_env"), str):
        key = os.environ.get(config["key_env"])
    if not key:
        key = config.get("key")
    return gateway, key


def build_report(event: dict, deadline: float) -> dict:
    """The payload POSTed to the gateway for one hook event."""
    roots = event.get("workspace_roots") or []
    root = roots[0] if roots and isinstance(roots[0], str) else None
    repo_url = branch = None
    if root:
        raw = _git(root, ["config", "--get", "remote.origin.url"], deadline)
        repo_url = normalise_remote_url(raw) if raw else None
        branch = _git(root, ["rev-parse", "--abbrev-ref", "HEAD"], deadline)
        if branch == "HEAD":  # detached: no branch to charge
            branch = None
    name_source = repo_url or (root or "")
    repo = re.split(r"[\\/]", name_source.rstrip("/\\"))[-1] or None
    report = {
        "conversation_id": event.get("conversation_id"),
        "generation_id": event.get("generation_id"),
        "model": event.get("model"),
        "workspace_root": root,
        "repo_url": repo_url,
        "repo": repo,
        "branch": branch,
        "hook_event_name": event.get("hook_event_name"),
        "sent_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
    }
    if event.get("user_email"):
        report["user_email"] = event["user_email"]
    if event.get("cursor_version"):
        report["cursor_version"] = event["cursor_version"]
    return report


def _post(gateway: str, key: str, report: dict, deadline: float) -> None:
    # http.client rather than urllib.request: ~15 ms less import time, and no proxy lookup.
    import http.client
    from urllib.parse import urlsplit

    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return
    url = urlsplit(gateway.rstrip("/") + ENDPOINT_PATH)
    if url.scheme == "https":
        conn = http.client.HTTPSConnection(url.hostname, url.port, timeout=remaining)
    else:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=remaining)
    try:
        conn.request(
            "POST",
            url.path,
            body=json.dumps(report).encode("utf-8"),
            headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
        )
        conn.getresponse().read(1024)
    finally:
        conn.close()


def _work(argv: list, deadline: float, state: dict) -> None:
    try:
        event = json.loads(sys.stdin.buffer.read(MAX_STDIN_BYTES) or b"{}")
        if not isinstance(event, dict):
            return
        state["event"] = event.get("hook_event_name")
        gateway, key = _gateway_and_key(argv)
        if not gateway or not key:
            return  # not configured: stay silent, Cursor must not notice
        _post(gateway, key, build_report(event, deadline), deadline)
        state["sent"] = True
    except Exception:  # fire and forget: any failure just drops this one report
        pass


def reply_for(event_name: str | None) -> str:
    """What Cursor expects on stdout: permission to continue for ``beforeSubmitPrompt``, else ``{}``."""
    return '{"continue": true}' if event_name == "beforeSubmitPrompt" else "{}"


def main(argv: list | None = None) -> None:
    deadline = time.monotonic() + TOTAL_TIMEOUT_S
    with contextlib.suppress(OSError):
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - never print a traceback into Cursor
    state: dict = {}
    worker = threading.Thread(target=_work, args=(list(argv or sys.argv[1:]), deadline, state), daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    try:
        sys.stdout.write(reply_for(state.get("event")) + "\n")
        sys.stdout.flush()
    except Exception:  # a closed stdout must not change the exit status
        pass
    # os._exit: do not wait for a worker stuck in DNS or connect past the deadline.
    os._exit(0)


if __name__ == "__main__":
    main()
