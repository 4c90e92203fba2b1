"""Price overrides: negotiated discounts on library prices, and prices for custom or self-hosted models.

Loaded from a YAML file (format in ``docs/pricing.md``)::

    discounts:                  # multiply genai-prices' prices; first matching rule wins
      - provider: anthropic     # optional; matches the span's provider or the genai-prices id
        model: "claude-*"       # optional glob; matches the span's model or the genai-prices id
        multiplier: 0.85
    models:                     # custom models; rates in USD per million tokens; first match wins
      - model: acme-llama-70b   # glob allowed
        provider: vllm          # optional
        input_per_mtok: 0.60
        output_per_mtok: 0.80
        cache_read_per_mtok: 0.06    # optional, default = input rate
        cache_write_per_mtok: 0.75   # optional, default = input rate

Every problem in the file is reported at once, each naming its field (``models[0].input_per_mtok``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any

import pydantic

__all__ = [
    "CustomModel",
    "Discount",
    "PriceOverrides",
    "PriceOverridesError",
    "load_price_overrides",
    "parse_price_overrides",
]


class PriceOverridesError(ValueError):
    """The overrides file cannot be read or is invalid; the message lists every problem found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid price overrides in {source}: " + "; ".join(problems))


def _matches(pattern: str | None, *candidates: str | None) -> bool:
    """Case-insensitive glob match of ``pattern`` against any candidate; no pattern matches all."""
    if pattern is None:
        return True
    pattern = pattern.lower()
    return any(candidate is not None and fnmatchcase(candidate.lower(), pattern) for candidate in candidates)


@dataclass(frozen=True, slots=True)
class Discount:
    """Multiply library prices of matching calls (0.85 = 15 % off; above 1 is a markup)."""

    multiplier: float
    provider: str | None = None
    model: str | None = None

    def matches(self, providers: tuple[str | None, ...], models: tuple[str | None, ...]) -> bool:
        """Whether the rule covers a call; ``providers`` and ``models`` are every name it goes by."""
        return _matches(self.provider, *providers) and _matches(self.model, *models)


@dataclass(frozen=True, slots=True)
class CustomModel:
    """A model priced from the overrides file alone, ahead of genai-prices."""

    model: str
    input_per_mtok: float
    output_per_mtok: float
    provider: str | None = None
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None

    def matches(self, providers: tuple[str | None, ...], model: str) -> bool:
        """Whether a call to ``model`` through any of ``providers`` is this custom model."""
        return _matches(self.provider, *providers) and _matches(self.model, model)


@dataclass(frozen=True)
class PriceOverrides:
    """Validated overrides; ``sha8`` identifies the file contents in every price they produce."""

    discounts: tuple[Discount, ...] = ()
    models: tuple[CustomModel, ...] = ()
    sha8: str = "00000000"
    source: str = "<none>"

    @property
    def version(self) -> str:
        """The price-table version of a custom-model price, e.g. ``override:1a2b3c4d``."""
        return f"override:{self.sha8}"

    def custom_model(self, providers: tuple[str | None, ...], model: str) -> CustomModel | None:
        """The first custom model matching the call, if any."""
        return next((custom for custom in self.models if custom.matches(providers, model)), None)

    def discount(self, providers: tuple[str | None, ...], models: tuple[str | None, ...]) -> Discount | None:
        """The first discount rule matching the call, if any."""
        return next((rule for rule in self.discounts if rule.matches(providers, models)), None)


def load_price_overrides(path: str | Path) -> PriceOverrides:
    """Read and validate an overrides YAML file; raises ``PriceOverridesError`` naming each bad field."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise PriceOverridesError(str(path), [f"cannot read file: {exc.strerror or exc}"]) from None
    return parse_price_overrides(content, source=str(path))


def parse_price_overrides(content: str | bytes, *, source: str = "<string>") -> PriceOverrides:
    """Validate overrides YAML given as text; ``source`` names it in error messages."""
    import yaml

    raw = content.encode() if isinstance(content, str) else content
    sha8 = hashlib.sha256(raw).hexdigest()[:8]
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise PriceOverridesError(source, [f"not valid YAML: {exc}"]) from None
    if data is None:  # an empty file is a valid "no overrides"
        data = {}

    model, problems = _validate(data)
    if problems or model is None:  # no model comes only with pydantic's problems
        raise PriceOverridesError(source, problems)
    return PriceOverrides(
        discounts=tuple(Discount(**rule.model_dump()) for rule in model.discounts),
        models=tuple(CustomModel(**custom.model_dump()) for custom in model.models),
        sha8=sha8,
        source=source,
    )


def _validate(data: Any) -> tuple[_OverridesFile | None, list[str]]:
    """Validate parsed YAML; return the parsed file and every problem as "field: message"."""
    try:
        parsed = _OverridesFile.model_validate(data)
    except pydantic.ValidationError as exc:
        return None, [f"{_field_path(error['loc'])}: {error['msg']}" for error in exc.errors()]

    problems: list[str] = []
    seen: dict[tuple[str, str | None], int] = {}
    for index, custom in enumerate(parsed.models):
        # A second entry for the same model and provider would never be used: first match wins.
        key = (custom.model.lower(), custom.provider.lower() if custom.provider else None)
        if key in seen:
            problems.append(f"models[{index}].model: duplicate of models[{seen[key]}] ({custom.model!r})")
        seen.setdefault(key, index)
    return parsed, problems


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``("models", 0, "input_per_mtok")`` -> ``models[0].input_per_mtok``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(file)"


# The file's schema. Strict: "0.6" in quotes or `true` is a mistake, not a price; unknown keys are
# typos (`input_per_mtoks`) that would otherwise silently price at the default.
_STRICT = pydantic.ConfigDict(extra="forbid", strict=True)
_Rate = Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)]
_Name = Annotated[str, pydantic.Field(min_length=1)]


class _DiscountEntry(pydantic.BaseModel):
    model_config = _STRICT
    multiplier: Annotated[float, pydantic.Field(gt=0, allow_inf_nan=False)]
    provider: _Name | None = None
    model: _Name | None = None


class _ModelEntry(pydantic.BaseModel):
    model_config = _STRICT
    model: _Name
    input_per_mtok: _Rate
    output_per_mtok: _Rate
    provider: _Name | None = None
    cache_read_per_mtok: _Rate | None = None
    cache_write_per_mtok: _Rate | None = None


class _OverridesFile(pydantic.BaseModel):
    model_config = _STRICT
    discounts: list[_DiscountEntry] = []
    models: list[_ModelEntry] = []

    @pydantic.field_validator("discounts", "models", mode="before")
    @classmethod
    def _empty_section(cls, value: object) -> object:
        # `models:` with nothing under it parses as null; read it as an empty list.
        return [] if value is None else value
