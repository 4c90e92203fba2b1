"""Who is asking, and what they may see: identities, roles, OIDC sign-in and the route policy.

``identity`` holds the small shared vocabulary (``Role``, ``Identity``, the ``allow`` marker every
API handler and dashboard page carries); the rest of the package turns a request into an
``Identity`` (session cookie from OpenID Connect sign-in, or the local admin token) and refuses
what that identity's role does not allow. ``scope`` narrows spend queries and budgets to the
identity's slice; ``csrf`` gives pages the token their forms must carry.
"""

from .csrf import csrf_token
from .errors import AuthError, Forbidden, Unauthenticated
from .identity import ALL_ROLES, REQUEST_KEY, Identity, Role, allow, allowed_roles
from .scope import can_manage_budget, can_see_budget, require_manage_budget, scope_filter

__all__ = [
    "ALL_ROLES",
    "REQUEST_KEY",
    "AuthError",
    "Forbidden",
    "Identity",
    "Role",
    "Unauthenticated",
    "allow",
    "allowed_roles",
    "can_manage_budget",
    "can_see_budget",
    "csrf_token",
    "require_manage_budget",
    "scope_filter",
]
