"""Settings for the simulated OpenAI-compatible provider: one frozen dataclass with plain defaults."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-5",
    "o4-mini",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
)
"""What ``GET /v1/models`` lists. Any other model name is still answered."""


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How the simulator answers. Everything except the fault rates is deterministic.

    ``chunks`` content deltas per streamed text answer; ``ttft_ms`` waited before the first event and
    ``chunk_delay_ms`` between events; ``api_key``, when set, is required as ``Authorization: Bearer``
    (or as Anthropic's ``x-api-key`` on ``/v1/messages``);
    ``cached_ratio`` of prompt tokens are reported as cached; ``error_rate_429`` / ``error_rate_500``
    fail that share of completion requests at random (reproducibly with ``seed``);
    ``record_requests`` keeps that many recent requests for ``GET /_sim/requests`` (0 turns it off).
    """

    chunks: int = 20
    ttft_ms: float = 0
    chunk_delay_ms: float = 0
    models: tuple[str, ...] = DEFAULT_MODELS
    api_key: str | None = None
    cached_ratio: float = 0.0
    error_rate_429: float = 0
    error_rate_500: float = 0
    seed: int | None = None
    record_requests: int = 100

    def __post_init__(self) -> None:
        problems = self.validate()
        if problems:
            raise ValueError("invalid simulator config: " + "; ".join(problems))

    def validate(self) -> list[str]:
        """Every problem with these settings at once (empty when they are usable)."""
        problems: list[str] = []
        if self.chunks < 1:
            problems.append(f"chunks must be at least 1 (got {self.chunks})")
        if self.ttft_ms < 0:
            problems.append(f"ttft_ms must not be negative (got {self.ttft_ms})")
        if self.chunk_delay_ms < 0:
            problems.append(f"chunk_delay_ms must not be negative (got {self.chunk_delay_ms})")
        if not 0 <= self.cached_ratio <= 1:
            problems.append(f"cached_ratio must be between 0 and 1 (got {self.cached_ratio})")
        for name in ("error_rate_429", "error_rate_500"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                problems.append(f"{name} must be between 0 and 1 (got {value})")
        if self.error_rate_429 + self.error_rate_500 > 1:
            problems.append("error_rate_429 + error_rate_500 must not exceed 1")
        if self.record_requests < 0:
            problems.append(f"record_requests must not be negative (got {self.record_requests})")
        if self.api_key == "":
            problems.append("api_key must not be empty (use None to accept any key)")
        return problems
