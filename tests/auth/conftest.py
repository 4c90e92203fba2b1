"""Fixtures of the auth tests: ``oidc_stack`` (a test IdP and a collector in ``auth.mode: oidc``)."""

from tests.support.oidc_idp import oidc_stack  # noqa: F401  (a fixture, used by name)
