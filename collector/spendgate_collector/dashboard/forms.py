"""Reading a dashboard form post: its text fields, and one field's value as the engines want it.

The budgets and keys pages post forms to themselves; the auth middleware has checked the CSRF
token before a handler reads the form.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web


async def posted_form(request: web.Request) -> Mapping[str, str]:
    """The posted form's text fields (file uploads, which no page takes, are dropped)."""
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def field(form: Mapping[str, str], name: str) -> str | None:
    """``name``'s value stripped, or ``None`` when absent or blank (an empty input means "not given")."""
    return form.get(name, "").strip() or None
