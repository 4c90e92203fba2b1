"""Who is looking, and the slice they may see: the dashboard's use of the auth package's rules.

Pages take the identity the auth middleware put on the request (``auth.identity.identity_of``) and
narrow every query with ``auth.scope`` (the same rules as the API routes), so a page never shows
what its API would refuse. This module adds only what pages need on top: the budgets a viewer may
see or change by id, for status rows that carry ids rather than ``Budget`` objects.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..auth.identity import Identity, Role
from ..auth.scope import can_manage_budget, can_see_budget
from ..budgets import Budget


def budget_rights(identity: Identity, budgets: Iterable[Budget]) -> tuple[set[str], set[str]]:
    """Ids of the budgets ``identity`` may see, and of those it may change (with their overrides)."""
    seen, managed = set(), set()
    for budget in budgets:
        if can_see_budget(identity, budget.scope_dict):
            seen.add(budget.id)
            if can_manage_budget(identity, budget.scope_dict):
                managed.add(budget.id)
    return seen, managed


def scope_note(identity: Identity, equals: dict[str, str], within: dict[str, tuple[str, ...]]) -> str:
    """What slice a page shows, in words."""
    if identity.role is Role.DEVELOPER:
        return f"your own spend ({identity.email})"
    if identity.role is Role.LEAD:
        teams = (equals["team"],) if "team" in equals else within.get("team", identity.teams)
        return ("team " if len(teams) == 1 else "teams ") + ", ".join(teams)
    return "the whole organisation"
