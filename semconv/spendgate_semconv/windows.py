"""Cursor hook attribution windows: the one rule for when a report extends a window and when it replaces it.

Cursor's hook script reports a developer's repo checkout and branch just before each turn's first
LLM call. The proxy that receives it keeps a live window per developer, and the collector merges
the reports of every proxy into a short history; both apply the same rule (review P3, F4):

- two reports are in the *same place* when they name the same repo, branch, remote and workspace
  root (``same_place``): a refresh, not a switch;
- a report *continues* a window when it is in the same place and starts before the window lapsed
  (``continues``); the window in force is then the report, starting when the window started
  (``extend``), so a long session in one repo is one window rather than many;
- any other report replaces the window (latest report wins).

``Window`` is the proxy's form (the developer is the key of its table); the collector's history
entries carry the developer too and follow the same ``Place`` shape. Standard library and the
generated protobuf module only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol, TypeVar

from spendgate_semconv import control_pb2


class Place(Protocol):
    """What the rule reads of a window: where the developer works, and from when to when."""

    @property
    def repo(self) -> str: ...
    @property
    def branch(self) -> str | None: ...
    @property
    def repo_url(self) -> str | None: ...
    @property
    def workspace_root(self) -> str | None: ...
    @property
    def since_ns(self) -> int: ...
    @property
    def until_ns(self) -> int: ...


W = TypeVar("W", bound=Place)


def same_place(a: Place, b: Place) -> bool:
    """True when both name the same repo checkout and branch (a refresh, not a switch)."""
    return (
        a.repo == b.repo and a.branch == b.branch and a.repo_url == b.repo_url and a.workspace_root == b.workspace_root
    )


def continues(current: Place | None, report: Place) -> bool:
    """True when ``report`` extends ``current`` (same place, and it starts before ``current`` lapsed)."""
    return current is not None and same_place(current, report) and current.until_ns >= report.since_ns


def extend(current: Place, report: W) -> W:
    """The window in force after ``report`` continued ``current``: the report, from when ``current`` started.

    Call only when ``continues(current, report)``.
    """
    since = min(current.since_ns, report.since_ns)
    if since == report.since_ns:
        return report
    return dataclasses.replace(report, since_ns=since)  # type: ignore[type-var]  # every Place here is a dataclass


@dataclass(frozen=True, slots=True)
class Window:
    """One developer's live attribution: the repo their Cursor reported, valid from ``since_ns`` to ``until_ns``.

    ``since_ns`` is when the developer started working in this repo and branch (the first report of
    an unbroken run of reports naming it); ``until_ns`` is the last report plus the window TTL.
    """

    repo: str
    branch: str | None
    repo_url: str | None
    workspace_root: str | None
    since_ns: int
    until_ns: int

    def same_place(self, other: Place) -> bool:
        """True when both name the same repo checkout and branch (a refresh, not a switch)."""
        return same_place(self, other)


def to_message(user: str, window: Place) -> control_pb2.AttributionWindow:
    """A window as its wire form (``None`` fields become empty strings)."""
    return control_pb2.AttributionWindow(
        user=user,
        repo=window.repo,
        branch=window.branch or "",
        repo_url=window.repo_url or "",
        workspace_root=window.workspace_root or "",
        since_unix_ns=window.since_ns,
        until_unix_ns=window.until_ns,
    )


def from_message(msg: control_pb2.AttributionWindow) -> Window:
    """A wire window as a ``Window`` (empty strings become None); the developer is ``msg.user``."""
    return Window(
        repo=msg.repo,
        branch=msg.branch or None,
        repo_url=msg.repo_url or None,
        workspace_root=msg.workspace_root or None,
        since_ns=msg.since_unix_ns,
        until_ns=msg.until_unix_ns,
    )


__all__ = ["Place", "Window", "continues", "extend", "from_message", "same_place", "to_message"]
