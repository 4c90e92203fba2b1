"""Rules about who may import or call what, read from the source with ``ast`` (no code is run).

The collector's rules (issue 14, review P6): only its database layer, ``spendgate_collector.store``,
opens database connections or writes DDL and pragmas, so a second SQL backend plugs in there and
nowhere else. Feature modules may still import ``sqlite3`` for its types and exception classes.
"""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR = ROOT / "collector" / "spendgate_collector"
STORE = COLLECTOR / "store"

# Modules whose functions open a database connection, and the functions that do.
_CONNECTORS = {"sqlite3": {"connect"}, "sqlite_utils": {"Database"}, "psycopg": {"connect"}, "aiosqlite": {"connect"}}
_DDL = re.compile(r"\b(CREATE|ALTER|DROP)\s+(UNIQUE\s+)?(TABLE|INDEX|VIEW|TRIGGER)\b|\bPRAGMA\s+\w+|\bVACUUM\b", re.I)


def _collector_modules_outside_the_store() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(COLLECTOR.rglob("*.py")):
        if path.is_relative_to(STORE) or path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
            continue
        yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"


def _connection_calls(path: Path, tree: ast.Module) -> Iterator[str]:
    """``sqlite3.connect(...)`` (through any alias) and ``from sqlite3 import connect`` style imports."""
    aliases: dict[str, str] = {}  # local name -> connector module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in _CONNECTORS:
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module in _CONNECTORS:
            for alias in node.names:
                if alias.name in _CONNECTORS[node.module]:
                    yield f"{_where(path, node)} imports {node.module}.{alias.name}"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in aliases
            and node.func.attr in _CONNECTORS[aliases[node.func.value.id]]
        ):
            yield f"{_where(path, node)} calls {aliases[node.func.value.id]}.{node.func.attr}()"
    if "sqlite_utils" in aliases.values():
        yield f"{path.relative_to(ROOT)} imports sqlite_utils"


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _ddl_strings(path: Path, tree: ast.Module) -> Iterator[str]:
    """String literals (docstrings aside) that hold DDL or a pragma."""
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found = _DDL.search(node.value)
            if found:
                yield f"{_where(path, node)}: {found.group(0)!r}"


def test_only_the_store_opens_database_connections() -> None:
    offenders = [o for path, tree in _collector_modules_outside_the_store() for o in _connection_calls(path, tree)]
    assert [] == offenders, "open connections with spendgate_collector.store.db.connect instead"


def test_only_the_store_writes_ddl_and_pragmas() -> None:
    offenders = [o for path, tree in _collector_modules_outside_the_store() for o in _ddl_strings(path, tree)]
    assert [] == offenders, "add a migration to spendgate_collector/store/migrations.py instead"


def test_the_rules_see_what_they_forbid() -> None:
    # The scanners themselves, on a module that breaks both rules, so a rule cannot pass by seeing nothing.
    source = (
        "import sqlite3 as lite\nfrom sqlite3 import connect\n"
        "conn = lite.connect('x.db')\n"
        "conn.execute('CREATE TABLE t (x)')\nconn.execute('PRAGMA user_version = 3')\n"
    )
    tree = ast.parse(source)
    path = COLLECTOR / "example.py"
    assert 2 == len(list(_connection_calls(path, tree)))
    assert 2 == len(list(_ddl_strings(path, tree)))
