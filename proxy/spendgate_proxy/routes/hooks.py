"""``POST /hooks/cursor``: a Cursor hook report opens (or renews) the developer's attribution window.

The report comes from ``spendgate_proxy/cursor/hook_script.py``, run by Cursor on each hook event with
the developer's virtual key. The route authenticates the key exactly like the chat route (same 401
errors), checks the report's fields, stores the window in this proxy's ``HookWindows`` at once
(so the developer's next call here is attributed with no round trip) and hands it to the control
client, which forwards it to the collector in the background so every other proxy learns it too.
It answers 204 with no body: the script never reads the reply, and Cursor waits for the script.

Only the repo, branch, remote and workspace root are kept. Conversation and generation ids,
``user_email`` and ``sent_at`` are checked for type and then dropped: the window is keyed by the
key's own user (an email the script sends could be anyone's), and the proxy's clock times it.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from spendgate_proxy.attribution.hook_window import HookAttribution, developer_of
from spendgate_proxy.errors import CORS_HEADERS, BadRequest, ProxyError
from spendgate_proxy.http.inbound import UnknownVirtualKey, authenticate, authenticate_again, read_json
from spendgate_proxy.state import STATE

MAX_REPORT_BYTES = 16 * 1024
"""A report is a few hundred bytes (paths included); anything much larger is not from the script."""

MAX_FIELD_CHARS = 2048
"""Longest accepted value of one field: room for deep workspace paths and long remote URLs."""

# Every field the hook script sends, all strings or null. Unknown fields are ignored, so a newer
# script can add some without breaking older gateways.
_STRING_FIELDS = (
    "repo",
    "branch",
    "repo_url",
    "workspace_root",
    "conversation_id",
    "generation_id",
    "model",
    "hook_event_name",
    "sent_at",
    "user_email",
    "cursor_version",
)


def _no_content() -> web.Response:
    return web.Response(status=204, headers=CORS_HEADERS)


def _bad(field: str, message: str) -> BadRequest:
    return BadRequest(f"Invalid hook report field '{field}': {message}.", code="invalid_hook_report", param=field)


def clean_remote_url(url: str | None) -> str | None:
    """The remote URL without credentials, query or fragment: it goes into spans and the database.

    The hook script already drops credentials (``https://user:token@host/...``), but an older or
    edited script might not, and a token must never reach a span. An scp-style remote
    (``git@github.com:acme/api.git``) has no scheme and carries only the conventional ``git`` user:
    it is kept as it is.
    """
    if not url or "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_report(body: dict[str, Any]) -> dict[str, str | None]:
    """The report's string fields (None when absent or null); raises ``BadRequest`` naming the bad field."""
    out: dict[str, str | None] = {}
    for field in _STRING_FIELDS:
        value = body.get(field)
        if value is None:
            out[field] = None
            continue
        if not isinstance(value, str):
            raise _bad(field, f"expected a string or null, got {type(value).__name__}")
        if len(value) > MAX_FIELD_CHARS:
            raise _bad(field, f"longer than {MAX_FIELD_CHARS} characters")
        out[field] = value.strip() or None
    return out


async def cursor_hook(request: web.Request) -> web.Response:
    """``POST /hooks/cursor``: authenticate, validate, store the window, forward it, answer 204."""
    state = request.app[STATE]
    try:
        try:
            principal = authenticate(state.keys, request.headers)
        except UnknownVirtualKey as unknown:  # a key created a moment ago still works
            principal = await authenticate_again(state, unknown)
        _, body = await read_json(request, MAX_REPORT_BYTES)
        report = parse_report(body)
    except ProxyError as exc:
        return exc.response()
    repo = report["repo"]
    if repo is None:
        # The script found no workspace root: a valid report with nothing to attribute.
        return _no_content()
    now = time.time_ns()
    window = HookAttribution(
        repo=repo,
        branch=report["branch"],
        repo_url=clean_remote_url(report["repo_url"]),
        workspace_root=report["workspace_root"],
        since_ns=now,
        until_ns=now + int(state.cursor.hook_window_s * 1e9),
    )
    user = developer_of(principal.user, principal.key_id)
    window = state.hook_windows.report(user, window)
    if state.control_client is not None:
        state.control_client.report_attribution(user, window)
    return _no_content()
