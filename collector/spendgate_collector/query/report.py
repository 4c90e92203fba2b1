"""Spend reports as text: readable tables, CSV and JSON, from a database file or a running collector.

Used by ``spendgate report`` and by the API's ``/api/chargeback.csv``, so the CSV a finance team
downloads and the one the CLI writes are byte for byte the same. Sources take the same string
parameters as the HTTP API (``month``, ``from``, ``to``, ``group_by``, dimension filters) and give
the same rows, whichever way they read.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

from ..api_client import ApiClient, ApiUnreachable
from ..errors import CollectorError
from ..store.base import Row
from ..store.query import CHARGEBACK_DIMENSIONS, MEASURES, parse_filter, parse_group_by

CHARGEBACK_COLUMNS: tuple[str, ...] = (
    "month",
    *CHARGEBACK_DIMENSIONS,
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "requests",
    "unpriced_requests",
)
"""Columns of the chargeback CSV, in order (``docs/chargeback.md`` explains each)."""

# Table output keeps the columns people read; CSV and JSON carry every measure.
TABLE_MEASURES: tuple[str, ...] = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "unpriced_requests",
)
_TABLE_HEADERS = {
    "cost_center": "cost centre",
    "input_tokens": "input tok",
    "output_tokens": "output tok",
    "cache_read_tokens": "cache read",
    "cache_write_tokens": "cache write",
    "reasoning_tokens": "reasoning",
    "cost_usd": "cost USD",
    "unpriced_requests": "unpriced",
}


class ReportError(CollectorError):
    """A report could not be produced (no database, collector unreachable, bad answer)."""


def totals(rows: Sequence[Row]) -> Row:
    """Sum every measure over ``rows`` (``cost_usd`` rounded to the nano-dollar, like the store)."""
    out: Row = {m: 0 for m in MEASURES}
    for row in rows:
        for m in MEASURES:
            out[m] += row.get(m) or 0
    out["cost_usd"] = round(out["cost_usd"], 9)
    return out


def format_cost(value: float | None, places: int = 6) -> str:
    return "" if value is None else f"{value:.{places}f}"


def _cell(column: str, value: Any) -> str:
    if column == "cost_usd":
        return format_cost(value)
    return "" if value is None else str(value)


def rows_csv(rows: Sequence[Row], columns: Sequence[str]) -> str:
    """CSV text with a header line; costs with 6 decimals, unknown values empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(c, row.get(c)) for c in columns])
    return buf.getvalue()


def chargeback_csv(month: str, rows: Sequence[Row]) -> str:
    """The chargeback CSV for one month (columns: ``CHARGEBACK_COLUMNS``)."""
    return rows_csv([{"month": month, **row} for row in rows], CHARGEBACK_COLUMNS)


def format_table(rows: Sequence[Row], group_columns: Sequence[str], measures: Sequence[str] = TABLE_MEASURES) -> str:
    """A plain-text table with a header, one line per row and a TOTAL line."""
    columns = [*group_columns, *measures]
    total = totals(rows)

    def text(column: str, value: Any) -> str:
        if column == "cost_usd":
            return "n/a" if value is None else f"{value:,.4f}"
        if column in measures:
            return f"{value or 0:,}"
        return "(none)" if value is None else str(value)

    lines = [[text(c, row.get(c)) for c in columns] for row in rows]
    total_line = ["TOTAL" if i == 0 else "" for i in range(len(group_columns))] + [text(m, total[m]) for m in measures]
    headers = [_TABLE_HEADERS.get(c, c.replace("_", " ")) for c in columns]
    widths = [max(len(h), *(len(line[i]) for line in [*lines, total_line])) for i, h in enumerate(headers)]

    def render(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if columns[i] in measures else cell.ljust(widths[i]) for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    out = [render(headers), render(["-" * w for w in widths])]
    out.extend(render(line) for line in lines)
    out.append(render(["-" * w for w in widths]))
    out.append(render(total_line))
    return "\n".join(out) + "\n"


def to_json(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"


class ReportSource(Protocol):
    """Where report rows come from; ``params`` are the HTTP API's query parameters."""

    def spend(self, params: Mapping[str, str]) -> list[Row]: ...

    def chargeback(self, params: Mapping[str, str]) -> list[Row]: ...

    def coverage(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The ``GET /api/coverage`` body."""
        ...

    def reconcile(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The ``GET /api/reconcile`` body."""
        ...

    def close(self) -> None: ...


class DatabaseSource:
    """Read a collector's SQLite file directly (read-only; the collector may be running)."""

    def __init__(self, path: str | Path) -> None:
        from ..store.sqlite import SQLiteStore

        self._path = Path(path)
        try:
            self._store = SQLiteStore(path, readonly=True)
        except FileNotFoundError:
            raise ReportError(
                f"no spendgate database at {path} (start the collector first, or pass --db or --api)"
            ) from None

    def spend(self, params: Mapping[str, str]) -> list[Row]:
        return self._store.spend(parse_filter(params), parse_group_by(params.get("group_by")))

    def chargeback(self, params: Mapping[str, str]) -> list[Row]:
        return self._store.chargeback(parse_filter(params))

    def coverage(self, params: Mapping[str, str]) -> dict[str, Any]:
        from ..attribution import coverage

        flt, group_by = coverage.parse_params(params)
        return coverage.body(flt, coverage.build(self._store.coverage(flt, group_by), group_by))

    def reconcile(self, params: Mapping[str, str]) -> dict[str, Any]:
        # Imported here: it pulls in the Cursor connector, which report users rarely need.
        from ..attribution import reconcile

        flt, options = reconcile.parse_params(params)
        return reconcile.reconcile(self._store, self._path, flt, options, time.time_ns() // 1_000_000)

    def close(self) -> None:
        self._store.close()


class ApiSource:
    """Ask a running collector's query API."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        # With sign-in on, the operator's admin token ($SPENDGATE_ADMIN_TOKEN) lets the report in.
        self._client = ApiClient(base_url, timeout=timeout)

    def _get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        try:
            answer = self._client.send("GET", path, params=params)
        except ApiUnreachable as exc:
            raise ReportError(str(exc)) from None
        try:
            body = answer.json()
        except ValueError:
            body = None
        if answer.status >= 400:
            detail = body.get("error", answer.reason) if isinstance(body, dict) else answer.reason
            raise ReportError(f"collector API answered {answer.status}: {detail}")
        if body is None:
            raise ReportError(f"collector API at {self._client.base_url} did not answer JSON")
        return body

    def spend(self, params: Mapping[str, str]) -> list[Row]:
        return self._get("/api/spend", params)["rows"]

    def chargeback(self, params: Mapping[str, str]) -> list[Row]:
        return self._get("/api/chargeback", params)["rows"]

    def coverage(self, params: Mapping[str, str]) -> dict[str, Any]:
        return self._get("/api/coverage", params)

    def reconcile(self, params: Mapping[str, str]) -> dict[str, Any]:
        return self._get("/api/reconcile", params)

    def close(self) -> None:
        pass
