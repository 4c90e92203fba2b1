"""Shared pieces of the provider tests: Bedrock settings, fixed credentials, a botocore client that never sends."""

from __future__ import annotations

import datetime as dt
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.credentials import Credentials
from botocore.session import get_session

from spendgate_proxy.config import ProviderSettings
from spendgate_proxy.providers.bedrock import BedrockProvider
from spendgate_simulator.bedrock import SIM_ACCESS_KEY_ID, SIM_SECRET_ACCESS_KEY

REGION = "us-east-1"
MODEL_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
FROZEN = dt.datetime(2026, 1, 2, 3, 4, 5)
"""A fixed signing time (naive UTC, as botocore's clock returns it)."""

SIM_CREDENTIALS = Credentials(SIM_ACCESS_KEY_ID, SIM_SECRET_ACCESS_KEY)


def bedrock_provider(endpoint: str, credentials: Credentials = SIM_CREDENTIALS, **kwargs: Any) -> BedrockProvider:
    """A Bedrock provider for ``endpoint`` with fixed credentials (no AWS environment is read)."""
    settings = ProviderSettings(type="bedrock", region=REGION, base_url=endpoint)
    return BedrockProvider("bedrock", settings, credentials=credentials, **kwargs)


class CapturingClient:
    """botocore's own ``bedrock-runtime`` client whose requests are captured instead of sent."""

    def __init__(self, endpoint: str, credentials: Credentials) -> None:
        self.client = get_session().create_client(
            "bedrock-runtime",
            region_name=REGION,
            endpoint_url=endpoint,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            aws_session_token=credentials.token,
        )
        self.sent: list[AWSPreparedRequest] = []
        self.client.meta.events.register("before-send.bedrock-runtime.*", self._capture)

    def _capture(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        self.sent.append(request)
        return AWSResponse(request.url, 200, {"Content-Type": "application/json"}, _EmptyRaw())


class _EmptyRaw:
    def stream(self, **_: Any) -> Any:
        yield b"{}"
