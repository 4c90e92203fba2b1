"""The proxy's configuration: one typed object, loaded from YAML plus environment, validated at start.

Resolution order for each setting: command-line flag, then ``SPENDGATE_*`` environment variable,
then the YAML file, then the default below. Provider secrets never sit in the file: a provider
names the environment variable that holds its key (``api_key_env``). Errors name the bad field,
e.g. ``providers.openai.base_url: Input should be a valid URL``.

Environment variables read here:

``SPENDGATE_CONFIG``
    Path of the YAML file (default: none; built-in defaults only).
``SPENDGATE_PROXY_LISTEN``
    ``host:port`` to listen on (default ``127.0.0.1:8787``).
``SPENDGATE_KEYS_FILE``
    Virtual-key directory file (default ``./spendgate-data/keys.yaml``).
``SPENDGATE_CAPTURE_CONTENT``
    ``true`` to record prompt and completion text on spans (default ``false``).
``SPENDGATE_CONTROL_ENDPOINT``
    Collector control-plane ``host:port`` to subscribe to for keys and budget verdicts (default
    ``127.0.0.1:4320``, the collector's default), or ``off`` to run standalone: keys from the file
    only and **no budgets**. Like the ``OTEL_*`` variables, an empty value counts as unset.
``SPENDGATE_CONTROL_ON_NO_STATE``
    ``fail_open`` or ``fail_closed``: what a proxy that never received control state does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spendgate_proxy.formats.cursor import DEFAULT_MAX_TOKENS_FLOOR
from spendgate_proxy.keys import DEFAULT_KEYS_FILE

DEFAULT_LISTEN = "127.0.0.1:8787"
DEFAULT_CONTROL_ENDPOINT = "127.0.0.1:4320"
"""The collector's default control address (its ``control`` setting): budgets apply unless turned off."""
CONTROL_OFF_WORDS = frozenset({"off", "none", "false"})
"""Values of ``control`` / ``control.endpoint`` that make a proxy standalone (YAML's bare ``off`` is False)."""
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
"""Cursor re-sends whole histories (128K tokens and images), so the limit is generous."""


class ConfigError(Exception):
    """The configuration is invalid; the message names every bad field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Model):
    """Upstream timeouts in seconds. Long agent turns stream for minutes, hence the generous read."""

    connect: float = Field(10.0, gt=0)
    read: float = Field(600.0, gt=0, description="max silence between two upstream reads")
    total: float | None = Field(None, gt=0, description="cap on a whole call; none by default")


ProviderType = Literal["openai", "anthropic", "bedrock"]

DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}
"""Base URL per provider type when none is configured (Bedrock's follows from its region)."""

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"


class ProviderSettings(_Model):
    """One upstream: an OpenAI-compatible endpoint (OpenAI, Azure-style, vLLM, Ollama, ...), the
    Anthropic Messages API, or AWS Bedrock (``spendgate/proxy/providers/``)."""

    type: ProviderType = "openai"
    base_url: str | None = Field(
        None, description="default: https://api.openai.com/v1 (openai), https://api.anthropic.com (anthropic)"
    )
    api_key_env: str | None = None
    api_key: str | None = Field(None, description="resolved from api_key_env at load; never logged")
    headers: dict[str, str] = Field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    max_connections: int = Field(256, ge=1)
    anthropic_version: str = Field(DEFAULT_ANTHROPIC_VERSION, description="anthropic-version header (anthropic)")
    region: str | None = Field(None, description="AWS region (bedrock)")

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http(s) URL such as https://api.openai.com/v1, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _default_url(self) -> ProviderSettings:
        if self.base_url is None and self.type in DEFAULT_BASE_URLS:
            # frozen model: set through object.__setattr__ once, at validation
            object.__setattr__(self, "base_url", DEFAULT_BASE_URLS[self.type])
        return self

    def __repr__(self) -> str:  # keep the key out of reprs and tracebacks
        return f"ProviderSettings(type={self.type!r}, base_url={self.base_url!r})"


class ModelRoute(_Model):
    """A model name clients may ask for, and where it goes."""

    name: str = Field(min_length=1)
    provider: str
    upstream_model: str | None = Field(None, description="name sent upstream; default: same as name")

    @property
    def target(self) -> str:
        return self.upstream_model or self.name


class TelemetrySettings(_Model):
    """Where the proxy's spans go. Endpoint and protocol default to the standard OTEL_* variables."""

    exporter: Literal["otlp", "none", "console"] = "otlp"
    protocol: Literal["grpc", "http/protobuf"] | None = None
    endpoint: str | None = None
    service_name: str = "spendgate-proxy"
    export_interval_s: float = Field(1.0, gt=0)
    max_batch: int = Field(512, ge=1)
    max_queue: int = Field(65536, ge=1)
    capture_content: bool = False


class ControlSettings(_Model):
    """The control stream from the collector: key directory and budget verdicts (``control.py``).

    It is on by default, towards the collector's default address, so that budgets cannot be skipped
    by leaving the section out: only an explicit ``off`` makes a proxy standalone.
    """

    endpoint: str | None = Field(
        DEFAULT_CONTROL_ENDPOINT,
        description="collector control address host:port; None (written `off`) = standalone, no budgets",
    )
    on_no_state: Literal["fail_open", "fail_closed"] = Field(
        "fail_open",
        description="before the first snapshot: serve with the key file (open) or refuse with 503 (closed)",
    )
    heartbeat_timeout_s: float = Field(15.0, gt=0, description="silence before reconnecting (3x the heartbeat)")
    reconnect_initial_backoff_s: float = Field(0.5, gt=0)
    reconnect_max_backoff_s: float = Field(30.0, gt=0)
    proxy_id: str | None = Field(None, description="name shown by `spendgate status`; default host:pid")

    @field_validator("endpoint", mode="before")
    @classmethod
    def _check_endpoint(cls, value: Any) -> str | None:
        if value is False or (isinstance(value, str) and value.strip().lower() in CONTROL_OFF_WORDS):
            return None
        if value is None or (isinstance(value, str) and not value.strip()):
            # An empty value is not "off": budgets must never be dropped by a blank line.
            raise ValueError(
                f"empty; give the collector's control address host:port (default {DEFAULT_CONTROL_ENDPOINT}), "
                "or off to run standalone without budgets"
            )
        if not isinstance(value, str):
            raise ValueError(f"expected host:port or off, got {value!r}")
        split_listen(value.strip())
        return value.strip()

    @property
    def standalone(self) -> bool:
        """True when turned off: no collector, keys from the file only, no budgets."""
        return self.endpoint is None


class RuleMatch(_Model):
    """When a routing rule applies: every field given must match the call (all empty = every call)."""

    model: str | None = Field(None, description="requested model name")
    feature: str | None = Field(None, description="agent, chat, summarise or other")
    user: str | None = None
    team: str | None = None
    cost_center: str | None = None
    repo: str | None = None
    min_prompt_tokens: int | None = Field(None, ge=0, description="estimated from the body size (bytes / 4)")
    max_prompt_tokens: int | None = Field(None, ge=0)


class RouteTarget(_Model):
    """A model a rule sends calls to, with a weight for gradual rollouts."""

    model: str
    weight: float = Field(1.0, gt=0)


class RoutingRule(_Model):
    """One ordered routing rule: calls matching ``match`` go to ``target`` (or a weighted pick of ``targets``)."""

    name: str = Field(min_length=1)
    match: RuleMatch = RuleMatch()
    target: str | None = None
    targets: list[RouteTarget] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_target(self) -> RoutingRule:
        if (self.target is None) == (not self.targets):
            raise ValueError("give exactly one of target (a model) or targets (weighted models)")
        return self

    def weighted(self) -> list[RouteTarget]:
        return self.targets or [RouteTarget(model=self.target or "")]


class RoutingSettings(_Model):
    """Routing policy: ordered rules, then per-model fallbacks tried on 429 / 5xx / timeouts."""

    rules: list[RoutingRule] = Field(default_factory=list)
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict, description="model -> models tried in order when it fails before the first byte"
    )
    retry_after_max_s: float = Field(
        60.0, gt=0, description="longest provider retry-after honoured (a target is skipped while it cools down)"
    )


class WorkspaceRepoRule(_Model):
    """One ``cursor.workspace_repos`` rule: a glob (``pattern``) or a regex on a workspace path from the
    prompt, or on its git remote URL, and the repo it means (docs/cursor-attribution.md, section 2)."""

    pattern: str | None = Field(None, min_length=1, description="glob; '*' also matches '/'")
    regex: str | None = Field(None, min_length=1, description="searched; a (?P<repo>...) group may name the repo")
    repo: str | None = Field(None, min_length=1)

    @field_validator("regex")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc}): {value!r}") from None
        return value

    @model_validator(mode="after")
    def _one_matcher(self) -> WorkspaceRepoRule:
        if (self.pattern is None) == (self.regex is None):
            raise ValueError("give exactly one of pattern (a glob) or regex")
        if self.repo is None and (self.pattern is not None or "repo" not in re.compile(self.regex or "").groupindex):
            raise ValueError("give repo (or, for a regex, a (?P<repo>...) group naming it)")
        return self


class CursorSettings(_Model):
    """The Cursor route (``/cursor/v1/...``, docs/cursor.md) and repo attribution from Cursor's prompts."""

    max_tokens_floor: int | None = Field(
        DEFAULT_MAX_TOKENS_FLOOR,
        ge=1,
        description="least max_tokens a tool-using turn gets (Cursor's can cut tool JSON short); null = off",
    )
    pause_response: Literal["error", "message"] = Field(
        "message", description="a paused call answers as a chat message by default: Cursor shows it in the chat pane"
    )
    custom_tool_calls: Literal["raw", "json"] = Field(
        "raw", description="how custom (grammar) tool calls such as ApplyPatch reach Cursor (formats/cursor.py)"
    )
    prompt_workspace: bool = Field(
        True, description="repo from the workspace path in the prompt when no stronger source names one, on every route"
    )
    workspace_repos: list[WorkspaceRepoRule] = Field(
        default_factory=list,
        description="ordered path/remote rules -> repo; unmatched: the remote's name, else the folder's name",
    )
    hook_window_s: float = Field(
        900.0,
        gt=0,
        le=86400,
        description="seconds a hook report (POST /hooks/cursor) charges the developer's calls to its repo",
    )


class ProxySettings(_Model):
    """Everything ``spendgate proxy`` needs."""

    listen: str = DEFAULT_LISTEN
    keys_file: Path = Path(DEFAULT_KEYS_FILE)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    models: list[ModelRoute] = Field(default_factory=list)
    telemetry: TelemetrySettings = TelemetrySettings()
    control: ControlSettings = ControlSettings()
    routing: RoutingSettings = RoutingSettings()
    cursor: CursorSettings = CursorSettings()
    pause_response: Literal["error", "message"] = Field(
        "error",
        description="a paused call gets HTTP 402 with an OpenAI-style error, or a 200 assistant message",
    )

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @field_validator("control", mode="before")
    @classmethod
    def _control_shorthand(cls, value: Any) -> Any:
        return control_section(value)

    @model_validator(mode="after")
    def _check_routes(self) -> ProxySettings:
        seen: set[str] = set()
        for i, route in enumerate(self.models):
            if route.provider not in self.providers:
                known = ", ".join(sorted(self.providers)) or "none configured"
                raise ValueError(f"models[{i}].provider: unknown provider {route.provider!r} (known: {known})")
            if route.name in seen:
                raise ValueError(f"models[{i}].name: {route.name!r} is listed twice")
            seen.add(route.name)
        for i, rule in enumerate(self.routing.rules):
            for target in rule.weighted():
                if target.model not in seen:
                    raise ValueError(
                        f"routing.rules[{i}] ({rule.name}): target model {target.model!r} is not in models"
                    )
        for name, chain in self.routing.fallbacks.items():
            for model in (name, *chain):
                if model not in seen:
                    raise ValueError(f"routing.fallbacks.{name}: model {model!r} is not in models")
        return self

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


def split_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:8787"`` -> ``("127.0.0.1", 8787)``, with a clear error for anything else."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be host:port such as 127.0.0.1:8787, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def control_section(value: Any) -> Any:
    """The ``control`` section as a mapping: ``control: off`` (or a bare ``host:port``) names the
    endpoint, and an empty section (every line below it commented out) or ``on`` is the defaults."""
    if value is None or value is True:
        return {}
    if value is False or isinstance(value, str):
        return {"endpoint": value}
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping, off, or host:port, got {value!r}")
    return value


def _env_overrides(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "SPENDGATE_PROXY_LISTEN" in env:
        out["listen"] = env["SPENDGATE_PROXY_LISTEN"]
    if "SPENDGATE_KEYS_FILE" in env:
        out["keys_file"] = env["SPENDGATE_KEYS_FILE"]
    if "SPENDGATE_CAPTURE_CONTENT" in env:
        out.setdefault("telemetry", {})["capture_content"] = env["SPENDGATE_CAPTURE_CONTENT"]
    if env.get("SPENDGATE_CONTROL_ENDPOINT", "").strip():  # empty counts as unset, as OTEL_* variables do
        out.setdefault("control", {})["endpoint"] = env["SPENDGATE_CONTROL_ENDPOINT"]
    if "SPENDGATE_CONTROL_ON_NO_STATE" in env:
        out.setdefault("control", {})["on_no_state"] = env["SPENDGATE_CONTROL_ON_NO_STATE"]
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {msg}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> ProxySettings:
    """Build the settings from the YAML file, the environment and explicit overrides (flags).

    A missing provider key variable is an error naming the provider, found here rather than at
    the first request.
    """
    env = dict(os.environ if env is None else env)
    path = path or env.get("SPENDGATE_CONFIG")
    raw: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        # The file may hold collector settings too (spendgate up); the proxy reads its own part.
        raw = loaded.get("proxy", loaded) if "proxy" in loaded else loaded
        for shared in ("providers", "models", "routing", "telemetry", "control"):
            if shared in loaded and shared not in raw:
                raw[shared] = loaded[shared]
        raw = {k: v for k, v in raw.items() if k not in ("collector", "proxy")}
        if "control" in raw:  # before merging: `control: off` must survive an override of another field
            try:
                raw["control"] = control_section(raw["control"])
            except ValueError as exc:
                raise ConfigError(f"invalid configuration:\n  control: {exc}") from None
    raw = _merge(raw, _env_overrides(env))
    raw = _merge(raw, overrides or {})
    for name, provider in (raw.get("providers") or {}).items():
        if isinstance(provider, dict) and provider.get("api_key_env") and not provider.get("api_key"):
            var = provider["api_key_env"]
            if var not in env:
                raise ConfigError(
                    f"invalid configuration:\n  providers.{name}.api_key_env: environment variable {var} is not set"
                )
            provider["api_key"] = env[var]
    try:
        return ProxySettings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None
