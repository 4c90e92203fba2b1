"""``ExporterConfig``: one entry of the collector's ``exporters:`` list, validated with field-named errors.

    exporters:
      - name: phoenix                     # keys the exporter's persistent queue; [a-z0-9_-]
        protocol: grpc                    # grpc | http (OTLP/HTTP with protobuf bodies)
        endpoint: http://127.0.0.1:6006   # grpc: [http(s)://]host:port; http: URL (/v1/traces added to a bare one)
        headers: {authorization: "Bearer ..."}
        insecure: false                   # grpc without a scheme: plaintext instead of TLS
        tls: {ca_file: ..., cert_file: ..., key_file: ..., insecure_skip_verify: false}
        compression: none                 # none | gzip
        timeout_s: 10
        llm_only: false
        drop_content: false
        queue_max_bytes: 268435456        # per exporter; the oldest requests are dropped past it
        max_request_bytes: 1048576
        retry_initial_s: 0.5
        retry_max_s: 30

Defaults are named constants below, each with the reason for its value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .enrich import SpanFilter

# 256 MiB is ~200k forwarded LLM spans (~1.2 KiB each): an hour of a busy collector's LLM traffic
# at 50 spans/s, or ~10 s at the 20k spans/s peak, queued on disk while a backend is down.
DEFAULT_QUEUE_MAX_BYTES = 256 * 1024 * 1024
# 1 MiB per request keeps well under the 4 MiB that gRPC servers accept by default, and is big
# enough (~800 spans) that per-request overhead does not matter.
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_RETRY_INITIAL_S = 0.5
# Waits grow 0.5, 1, 2, ... up to 30 s: a backend that comes back is used again within 30 s.
DEFAULT_RETRY_MAX_S = 30.0

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class TlsConfig(BaseModel):
    """Client TLS settings; files are PEM."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ca_file: Path | None = None
    """CA bundle that signs the backend's certificate; default: the system's."""
    cert_file: Path | None = None
    """Client certificate, for backends that want mutual TLS (with ``key_file``)."""
    key_file: Path | None = None
    insecure_skip_verify: bool = False
    """HTTP only: accept any server certificate (testing only)."""

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: {path} is not a readable file")
        return self


class ExporterConfig(BaseModel):
    """Where and how one exporter forwards enriched spans."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """Unique name; keys the exporter's rows in the persistent queue and labels its metrics."""
    protocol: Literal["grpc", "http"] = "grpc"
    endpoint: str
    headers: dict[str, str] = Field(default_factory=dict)
    """Sent with every request (gRPC metadata keys are lowercased)."""
    insecure: bool = False
    """gRPC: plaintext when the endpoint has no scheme (``http://`` is always plaintext, ``https://`` TLS)."""
    tls: TlsConfig = Field(default_factory=TlsConfig)
    compression: Literal["none", "gzip"] = "none"
    """``none`` by default: gzip costs collector CPU (~4 µs per span) that a local backend does not need."""
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=600)
    llm_only: bool = False
    drop_content: bool = False
    queue_max_bytes: int = Field(DEFAULT_QUEUE_MAX_BYTES, ge=64 * 1024)
    max_request_bytes: int = Field(DEFAULT_MAX_REQUEST_BYTES, ge=16 * 1024)
    """Queued requests are merged up to this size (a single larger ingest request is sent whole)."""
    retry_initial_s: float = Field(DEFAULT_RETRY_INITIAL_S, gt=0, le=60)
    retry_max_s: float = Field(DEFAULT_RETRY_MAX_S, gt=0, le=3600)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value if "://" in value else "//" + value)
        if parts.scheme not in ("", "http", "https"):
            raise ValueError(f"scheme must be http or https, got {parts.scheme!r}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"bad port in {value!r}") from None
        if not parts.hostname:
            raise ValueError(f"no host in {value!r}")
        if "://" not in value and port is None:
            raise ValueError(f"expected HOST:PORT or a URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ExporterConfig:
        if self.protocol == "http" and "://" not in self.endpoint:
            raise ValueError("endpoint: an http exporter needs a URL (http://host:port[/v1/traces])")
        if self.protocol == "grpc" and self.tls.insecure_skip_verify:
            raise ValueError("tls.insecure_skip_verify: only supported by http exporters; give ca_file instead")
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError("retry_initial_s must not exceed retry_max_s")
        return self

    @property
    def span_filter(self) -> SpanFilter:
        return SpanFilter(llm_only=self.llm_only, drop_content=self.drop_content)


def validate_exporters(entries: list[ExporterConfig]) -> list[ExporterConfig]:
    """Check what only the whole list can tell (unique names); raise ``ValueError``."""
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if entry.name in seen:
            raise ValueError(f"entry {i}: name: {entry.name!r} is used twice")
        seen.add(entry.name)
    return entries
