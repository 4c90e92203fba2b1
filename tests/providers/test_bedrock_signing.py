"""SigV4: the Bedrock provider signs exactly as botocore's own ``bedrock-runtime`` client does.

Both sign the same request at the same (frozen) instant; the URL and the whole ``Authorization``
header must be identical, for plain and session credentials, a model id with ``:`` and an
inference-profile ARN with ``/`` (the path encodings SigV4 is most sensitive to). The simulator's
verifier is checked against the same botocore-signed requests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from botocore.credentials import Credentials

from spendgate_proxy.config import ProviderSettings
from spendgate_proxy.providers import create_provider
from spendgate_proxy.providers.bedrock import BedrockProvider
from spendgate_simulator.bedrock import SIM_ACCESS_KEY_ID, SIM_SECRET_ACCESS_KEY, verify_sigv4
from tests.providers.support import FROZEN, MODEL_ID, CapturingClient, bedrock_provider

ENDPOINTS = ["https://bedrock-runtime.us-east-1.amazonaws.com", "http://127.0.0.1:8123"]
MODEL_IDS = [MODEL_ID, "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"]
CREDENTIALS = [
    Credentials(SIM_ACCESS_KEY_ID, SIM_SECRET_ACCESS_KEY),
    Credentials("ASIASPENDGATETEMP001", "temporary/secret", "FwoGZXIvYXdzEJr//session+token="),
]
BODY = b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}'


@pytest.fixture
def frozen_clock() -> Iterator[None]:
    with mock.patch("botocore.auth.get_current_datetime", return_value=FROZEN):
        yield


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("model_id", MODEL_IDS)
@pytest.mark.parametrize("credentials", CREDENTIALS, ids=["static", "session"])
@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_signature_matches_botocore_client(
    endpoint: str, model_id: str, credentials: Credentials, stream: bool
) -> None:
    botocore_client = CapturingClient(endpoint, credentials)
    call = botocore_client.client.invoke_model_with_response_stream if stream else botocore_client.client.invoke_model
    call(modelId=model_id, body=BODY, contentType="application/json", accept="application/json")
    (theirs,) = botocore_client.sent

    provider = bedrock_provider(endpoint, credentials)
    url = provider.url_for("chat", model_id, stream=stream)
    ours = provider.headers_for(url, BODY)

    assert theirs.url == str(url)
    assert theirs.headers["Authorization"].decode() == ours["Authorization"]
    assert theirs.headers["X-Amz-Date"].decode() == ours["X-Amz-Date"]
    if credentials.token:
        assert theirs.headers["X-Amz-Security-Token"].decode() == ours["X-Amz-Security-Token"]
    else:
        assert "X-Amz-Security-Token" not in ours


def test_url_keeps_the_encoded_path() -> None:
    # yarl must not decode %3A / %2F: the bytes on the wire are the bytes that were signed.
    provider = bedrock_provider(ENDPOINTS[0])
    url = provider.url_for("chat", MODEL_IDS[1], stream=True)
    assert url.raw_path == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc123"
        "/invoke-with-response-stream"
    )


@pytest.mark.usefixtures("frozen_clock")
def test_simulator_verifier_accepts_botocore_and_refuses_tampering() -> None:
    endpoint = "http://127.0.0.1:8123"
    botocore_client = CapturingClient(endpoint, CREDENTIALS[0])
    botocore_client.client.invoke_model(modelId=MODEL_ID, body=BODY, contentType="application/json")
    (sent,) = botocore_client.sent
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in sent.headers.items()}
    headers["Host"] = "127.0.0.1:8123"  # added by the HTTP client, signed by botocore
    now = FROZEN.replace(tzinfo=dt.UTC)

    assert verify_sigv4("POST", sent.url, headers, BODY, now=now) is None

    tampered = verify_sigv4("POST", sent.url, headers, BODY.replace(b"hi", b"ho"), now=now)
    assert tampered is not None and tampered.status == 403
    assert dict(tampered.headers)["x-amzn-ErrorType"].startswith("InvalidSignatureException:")

    unknown = verify_sigv4("POST", sent.url, headers, BODY, credentials={"AKIAOTHER": ("x", None)}, now=now)
    assert unknown is not None and b"security token included in the request is invalid" in unknown.body

    late = verify_sigv4("POST", sent.url, headers, BODY, now=now + dt.timedelta(minutes=6))
    assert late is not None and b"Signature expired" in late.body

    unsigned = verify_sigv4("POST", sent.url, {k: v for k, v in headers.items() if k != "Authorization"}, BODY)
    assert unsigned is not None and unsigned.status == 403


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An AWS environment with no files and no instance metadata: only what a test sets counts."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def test_credentials_and_region_from_the_environment(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENV000000000")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    aws_env.setenv("AWS_SESSION_TOKEN", "env-token")
    aws_env.setenv("AWS_REGION", "eu-west-3")
    provider = create_provider("bedrock", ProviderSettings(type="bedrock"))
    assert isinstance(provider, BedrockProvider)
    assert provider.base_url == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    headers = provider.headers_for(provider.url_for("chat", MODEL_ID, stream=False), BODY)
    assert (
        "Credential=AKIAFROMENV000000000/" in headers["Authorization"]
        and "/eu-west-3/bedrock/" in headers["Authorization"]
    )
    assert headers["X-Amz-Security-Token"] == "env-token"


def test_missing_region_or_credentials_fail_at_start(aws_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="region"):
        create_provider("bedrock", ProviderSettings(type="bedrock"))
    with pytest.raises(ValueError, match="no AWS credentials"):
        create_provider("bedrock", ProviderSettings(type="bedrock", region="us-east-1"))
