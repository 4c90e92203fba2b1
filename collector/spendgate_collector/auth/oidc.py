"""The OpenID Connect relying party: discovery, authorization code + PKCE, token exchange, ID token checks.

Authlib does the OAuth 2 protocol work (authorization URL with S256 code challenge, state and
nonce; the code-for-token exchange with client authentication); joserfc verifies the ID token's
signature against the provider's JWKS (fetched again when a token names an unknown key id, which
is how providers rotate keys) and its ``iss``, ``aud``, ``exp``, ``iat`` and ``nonce`` claims.
Only asymmetric algorithms are accepted, never ``none`` or HMAC with a public key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .config import OidcConfig
from .errors import Unauthenticated

logger = logging.getLogger(__name__)

ASYMMETRIC_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
# A token with an unknown kid makes us fetch the JWKS again, but at most this often, so a flood of
# forged tokens cannot turn the collector into a load generator against the IdP.
JWKS_REFETCH_MIN_S = 10.0
HTTP_TIMEOUT_S = 10.0


class OidcError(Unauthenticated):
    """Sign-in failed (IdP unreachable, bad answer, an ID token that does not verify)."""


@dataclass(frozen=True, slots=True)
class LoginRequest:
    """What the callback needs to finish a sign-in; kept server-side, never in the browser."""

    url: str
    """Where to send the browser (the IdP's authorization endpoint with our parameters)."""
    state: str
    nonce: str
    code_verifier: str


class OidcClient:
    """One provider; discovery and JWKS are fetched lazily and cached."""

    def __init__(self, cfg: OidcConfig, client_secret: str | None) -> None:
        assert cfg.issuer and cfg.client_id and cfg.public_url
        self.cfg = cfg
        self.issuer: str = cfg.issuer
        self.client_id: str = cfg.client_id
        self._client_secret = client_secret
        self.redirect_uri = f"{cfg.public_url}/auth/callback"
        self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT_S)
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._last_refresh = float("-inf")
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self._http.aclose()

    def _oauth(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self._client_secret,
            # A public client (no secret) authenticates with PKCE alone.
            token_endpoint_auth_method="client_secret_basic" if self._client_secret else "none",
            scope=" ".join(self.cfg.scopes),
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            timeout=HTTP_TIMEOUT_S,
        )

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            resp = await self._http.get(url, headers={"Accept": "application/json"})
            resp.raise_for_status()
            doc = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"cannot read the identity provider's {what}: {exc}") from None
        if not isinstance(doc, dict):
            raise OidcError(f"the identity provider's {what} is not a JSON object")
        return doc

    async def metadata(self) -> dict[str, Any]:
        """The discovery document (``/.well-known/openid-configuration``), checked against the issuer."""
        if self._metadata is None:
            async with self._lock:
                if self._metadata is None:
                    doc = await self._get_json(f"{self.issuer}/.well-known/openid-configuration", "discovery document")
                    named = doc.get("issuer")
                    if str(named or "").rstrip("/") != self.issuer:
                        raise OidcError(f"the discovery document names issuer {named!r}, not {self.issuer!r}")
                    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                        if not isinstance(doc.get(name), str):
                            raise OidcError(f"the discovery document has no {name}")
                    self._metadata = doc
        return self._metadata

    async def _key_set(self, *, refresh: bool = False) -> KeySet:
        meta = await self.metadata()
        async with self._lock:
            stale = refresh and time.monotonic() - self._last_refresh >= JWKS_REFETCH_MIN_S
            if stale:
                self._last_refresh = time.monotonic()
            if self._keys is None or stale:
                doc = await self._get_json(meta["jwks_uri"], "JWKS")
                try:
                    self._keys = KeySet.import_key_set(doc)  # type: ignore[arg-type]  # raw JSON: import_key_set validates it
                except (JoseError, ValueError, TypeError, KeyError) as exc:
                    raise OidcError(f"the identity provider's JWKS is invalid: {exc}") from None
            return self._keys

    async def start_login(self) -> LoginRequest:
        """A fresh state, nonce and PKCE verifier, and the authorization URL that carries them."""
        meta = await self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        async with self._oauth() as oauth:
            url, _ = oauth.create_authorization_url(
                meta["authorization_endpoint"], state=state, code_verifier=verifier, nonce=nonce
            )
        return LoginRequest(url=url, state=state, nonce=nonce, code_verifier=verifier)

    async def finish_login(self, code: str, login: LoginRequest) -> dict[str, Any]:
        """Exchange ``code`` for tokens and return the verified ID token's claims."""
        meta = await self.metadata()
        async with self._oauth() as oauth:
            try:
                token = await oauth.fetch_token(
                    meta["token_endpoint"],
                    code=code,
                    code_verifier=login.code_verifier,
                    grant_type="authorization_code",
                )
            except Exception as exc:  # Authlib raises OAuthError, httpx errors, ValueError on bad JSON
                raise OidcError(f"the identity provider refused the sign-in: {_describe(exc)}") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("the identity provider returned no ID token")
        return await self.verify_id_token(id_token, nonce=login.nonce)

    async def verify_id_token(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """Signature (JWKS), issuer, audience, expiry and nonce; raise ``OidcError`` on any failure."""
        meta = await self.metadata()
        allowed = [a for a in meta.get("id_token_signing_alg_values_supported", ["RS256"]) if a in ASYMMETRIC_ALGS]
        try:
            header = jws.extract_compact(id_token.encode()).headers()
        except (JoseError, ValueError) as exc:
            raise OidcError(f"the ID token is malformed: {exc}") from None
        keys = await self._key_set()
        kid = header.get("kid")
        if kid is not None and not any(k.kid == kid for k in keys.keys):
            keys = await self._key_set(refresh=True)  # the provider may have rotated its keys
        try:
            token = jwt.decode(id_token, keys, algorithms=allowed or ["RS256"])
            claims = dict(token.claims)
            jwt.JWTClaimsRegistry(
                leeway=self.cfg.clock_skew_s,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                exp={"essential": True},
                iat={"essential": True},
                sub={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(claims)
        except (JoseError, ValueError) as exc:
            raise OidcError(f"the ID token was refused: {_describe(exc)}") from None
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.client_id:
            raise OidcError("the ID token was refused: several audiences and azp is not this client")
        return claims

    async def logout_url(self, post_logout_redirect_uri: str) -> str | None:
        """RP-initiated logout at the provider, when it advertises ``end_session_endpoint``."""
        try:
            meta = await self.metadata()
        except OidcError:
            return None
        endpoint = meta.get("end_session_endpoint")
        if not isinstance(endpoint, str):
            return None
        # client_id instead of id_token_hint: we do not keep ID tokens (they are credentials).
        query = urlencode({"client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect_uri})
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def _describe(exc: BaseException) -> str:
    """A short reason without secrets (tokens and codes are never part of these messages)."""
    text = getattr(exc, "description", None) or getattr(exc, "error", None) or str(exc) or type(exc).__name__
    return str(text)[:200]
