"""The collector's HTTP API as the command-line tools see it: JSON over the standard library.

``spendgate budgets``, ``status`` and ``report --api`` are small clients of a running collector. They
use ``urllib`` and ``json`` only, so a plain ``pip install spendgate`` (no extras) can run them from
any machine that reaches the collector; speed does not matter here.

When ``$SPENDGATE_ADMIN_TOKEN`` is set they send it as a Bearer token (the collector compares it with
the one named by its ``auth.admin_token_env``). Unset, they send nothing, which is what a collector
in ``auth.mode: open`` on loopback expects.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ADMIN_TOKEN_ENV = "SPENDGATE_ADMIN_TOKEN"
"""Where the command-line tools read the operator's admin token; also the default of ``auth.admin_token_env``."""


def admin_token_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}`` when ``$SPENDGATE_ADMIN_TOKEN`` is set, else ``{}``."""
    token = (os.environ if environ is None else environ).get(ADMIN_TOKEN_ENV, "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


class ApiUnreachable(Exception):
    """No HTTP answer at all: connection refused, DNS, timeout, a dropped connection."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, whatever its status (redirects are not followed: a 3xx is an answer too)."""

    status: int
    reason: str
    body: bytes

    def json(self) -> Any:
        """The body as JSON; raises ``ValueError`` when it is not."""
        return json.loads(self.body)

    def text(self, limit: int = 200) -> str:
        return self.body[:limit].decode("utf-8", errors="replace")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # hand the 3xx back as an HTTPError, as an API client should


class ApiClient:
    """Requests to one collector's API, with the admin token (when set) and any ``headers`` on each."""

    def __init__(self, base_url: str, *, timeout: float = 30.0, headers: Mapping[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._headers = {"Accept": "application/json", **admin_token_headers(), **(headers or {})}
        self._opener = urllib.request.build_opener(_NoRedirect)

    def send(self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None) -> Answer:
        """Send one request (``body`` as JSON); raises ``ApiUnreachable`` when no answer comes."""
        url = self.base_url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return Answer(response.status, response.reason, response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return Answer(exc.code, str(exc.reason), exc.read())
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ApiUnreachable(f"cannot reach the collector API at {self.base_url}: {reason}") from None
