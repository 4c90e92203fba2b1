"""Which slice of spend and which budgets an identity may see or change.

``scope_filter`` narrows a spend question to the asker's slice (a developer's own usage, a lead's
teams) and refuses, with ``Forbidden``, a question that explicitly names someone else's slice, so a
developer asking for ``developer=bob`` is told no instead of silently shown their own numbers.
The budget helpers answer the same question for budgets, given a budget's scope as a plain mapping
(``Budget.scope_dict``: ``{"team": "platform"}``, ``{}`` for the organisation), so access rules need
nothing from the budgets package; the API routes and dashboard pages both call them, so a page never
shows what its API would refuse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ..store.query import SpendFilter
from .errors import Forbidden
from .identity import Identity, Role

_UNRESTRICTED = frozenset({Role.ADMIN, Role.FINANCE})


def scope_filter(identity: Identity, flt: SpendFilter) -> SpendFilter:
    """``flt`` restricted to what ``identity`` may see; raise ``Forbidden`` when it asks for more."""
    if identity.role in _UNRESTRICTED:
        return flt
    asked = dict(flt.equals)
    if identity.role is Role.DEVELOPER:
        if not identity.email:
            raise Forbidden("your identity has no email, so no usage can be attributed to you")
        if "developer" in asked and asked["developer"] != identity.email:
            raise Forbidden("developers may only see their own usage")
        if "developer" in asked:
            return flt
        return dataclasses.replace(flt, equals=(*flt.equals, ("developer", identity.email)))
    if identity.role is Role.LEAD:
        if not identity.teams:
            raise Forbidden("your identity names no team, so there is no team spend to show")
        if "team" in asked:
            if asked["team"] not in identity.teams:
                raise Forbidden(f"team {asked['team']!r} is not one of your teams")
            return flt
        if len(identity.teams) == 1:
            return dataclasses.replace(flt, equals=(*flt.equals, ("team", identity.teams[0])))
        return dataclasses.replace(flt, within=(*flt.within, ("team", tuple(identity.teams))))
    raise Forbidden(f"role {identity.role!s} has no spend slice")


def _applies_to_person(identity: Identity, scope: Mapping[str, str]) -> bool:
    """The budget could bind this person's own requests: no other developer, no other team, no key."""
    if "key_id" in scope:
        # Key ids are not part of an identity, so a key budget cannot be shown to be "theirs".
        return False
    if "developer" in scope and scope["developer"] != identity.email:
        return False
    return not ("team" in scope and scope["team"] not in identity.teams)


def _in_led_team(identity: Identity, scope: Mapping[str, str]) -> bool:
    return scope.get("team") in identity.teams


def can_see_budget(identity: Identity, scope: Mapping[str, str]) -> bool:
    """Admin and finance see every budget; a lead their teams' budgets and their own; a developer
    the budgets that apply to them (their user, their team, organisation-wide)."""
    if identity.role in _UNRESTRICTED:
        return True
    if identity.role is Role.LEAD:
        return _in_led_team(identity, scope) or _applies_to_person(identity, scope)
    return _applies_to_person(identity, scope)


def can_manage_budget(identity: Identity, scope: Mapping[str, str]) -> bool:
    """Admin changes any budget; a lead only budgets scoped to one of their teams; nobody else."""
    if identity.role is Role.ADMIN:
        return True
    if identity.role is Role.LEAD:
        return _in_led_team(identity, scope)
    return False


def require_manage_budget(identity: Identity, budget_id: str, scope: Mapping[str, str]) -> None:
    """Raise ``Forbidden`` unless ``identity`` may change budget ``budget_id`` of ``scope`` (and its overrides)."""
    if not can_manage_budget(identity, scope):
        if identity.role is Role.LEAD:
            raise Forbidden(f"budget {budget_id!r} is not scoped to one of your teams")
        raise Forbidden(f"role {identity.role!s} may not change budgets")
