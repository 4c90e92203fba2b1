"""A config section given whole as JSON text: how an environment variable carries a nested section.

``SPENDGATE_COLLECTOR_AUTH`` and ``SPENDGATE_COLLECTOR_CURSOR_ADMIN`` hold their section as a JSON
object; the section's model runs ``section_from_json`` before validating, so YAML and the
environment give the same model.
"""

from __future__ import annotations

import json
from typing import Any


def section_from_json(value: Any) -> Any:
    """JSON text → the object it holds (blank text → ``{}``); any other value as it is.

    ``ValueError`` for text that is not JSON, so pydantic reports it against the section.
    """
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"expected a JSON object: {exc}") from None
    return value
