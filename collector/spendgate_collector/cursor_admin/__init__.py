"""Cursor-billed spend: a connector that polls the Cursor Admin API and stores its usage events as spend rows.

``client.py`` speaks the API (Basic auth, token-bucket rate limit, 429 backoff), ``mapping.py`` turns
one usage event into a ``SpendRecord``, ``state.py`` persists the resume cursor beside the spend rows
and ``poller.py`` ties them together. See docs/cursor-admin.md.
"""

from .client import AdminApiError, CursorAdminClient, TokenBucket
from .mapping import COST_SOURCE, SERVICE_NAME, event_ids, event_to_record
from .poller import CursorAdminPoller, PollResult
from .state import CursorState, StateTable

__all__ = [
    "COST_SOURCE",
    "SERVICE_NAME",
    "AdminApiError",
    "CursorAdminClient",
    "CursorAdminPoller",
    "CursorState",
    "PollResult",
    "StateTable",
    "TokenBucket",
    "event_ids",
    "event_to_record",
]
