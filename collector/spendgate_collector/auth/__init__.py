"""Who is asking, and what they may see: identities, roles, OIDC sign-in and the route policy.

``identity`` holds the small shared vocabulary (``Role``, ``Identity``, the ``allow`` marker every
API handler and dashboard page carries); the rest of the package turns a request into an
``Identity`` (session cookie from OpenID Connect sign-in, or the local admin token) and refuses
what that identity's role does not allow.
"""
