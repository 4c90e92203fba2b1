"""``spendgate report`` (table, CSV, JSON; from the database file or the API) and ``spendgate collector``."""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
# The expected tables are the exact output, wider than the code's line limit.
# ruff: noqa: E501
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from spendgate_app.cli import cli
from tests.collector.conftest import RunningCollector, run_collector
from tests.collector.seed import CHARGEBACK_CSV_2026_11, seed

TEAM_TABLE = """\
team      requests  input tok  output tok  cache read  cache write  cost USD  unpriced
--------  --------  ---------  ----------  ----------  -----------  --------  --------
platform         5     16,100       1,900       4,000        1,000    0.0312         0
data             2     40,500       2,050           0            0    0.0230         1
--------  --------  ---------  ----------  ----------  -----------  --------  --------
TOTAL            7     56,600       3,950       4,000        1,000    0.0542         1
"""

CHARGEBACK_TABLE = """\
developer     team      cost centre  repo        requests  input tok  output tok  cache read  cache write  cost USD  unpriced
------------  --------  -----------  ----------  --------  ---------  ----------  ----------  -----------  --------  --------
ana@acme.com  platform  CC-1001      acme-api           2     12,000       1,500       4,000        1,000    0.0198         0
bo@acme.com   platform  CC-1001      acme-api           2      1,100         100           0            0    0.0030         0
bo@acme.com   platform  CC-1001      acme-infra         1      3,000         300           0            0    0.0084         0
cy@acme.com   data      CC-2002      etl                2     40,500       2,050           0            0    0.0230         1
------------  --------  -----------  ----------  --------  ---------  ----------  ----------  -----------  --------  --------
TOTAL                                                   7     56,600       3,950       4,000        1,000    0.0542         1
"""

TEAM_REPO_CSV = """\
team,repo,requests,errors,unpriced_requests,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,reasoning_tokens,cost_usd
data,etl,2,0,1,40500,2050,0,0,0,0.023000
platform,acme-api,4,1,0,13100,1600,4000,1000,0,0.022800
platform,acme-infra,1,0,0,3000,300,0,0,0,0.008400
"""


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCollector]:
    with run_collector(tmp_path_factory.mktemp("cli")) as running:
        seed(running)
        yield running


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(params=["db", "api"])
def source(request: pytest.FixtureRequest, seeded: RunningCollector) -> list[str]:
    """The same report must come out whether read from the file or from the running collector."""
    return ["--db", str(seeded.store.path)] if request.param == "db" else ["--api", seeded.api_url]


def test_report_table_by_team(source: list[str]) -> None:
    result = run("report", "--month", "2026-11", "--by", "team", *source)
    assert (0, TEAM_TABLE) == (result.exit_code, result.output)


def test_report_csv_by_team_and_repo(source: list[str]) -> None:
    result = run("report", "--month", "2026-11", "--by", "team,repo", "--csv", *source)
    assert (0, TEAM_REPO_CSV) == (result.exit_code, result.output)


def test_report_json(source: list[str]) -> None:
    result = run("report", "--month", "2026-11", "--by", "team", "--json", *source)
    body = json.loads(result.output)
    assert ("2026-11", ["team"], 0.0542) == (body["month"], body["group_by"], body["totals"]["cost_usd"])
    assert [("platform", 0.0312), ("data", 0.023)] == [(row["team"], row["cost_usd"]) for row in body["rows"]]


def test_report_chargeback_table_csv_and_file(source: list[str], tmp_path: Path) -> None:
    table = run("report", "--month", "2026-11", "--chargeback", *source)
    assert (0, CHARGEBACK_TABLE) == (table.exit_code, table.output)
    as_csv = run("report", "--month", "2026-11", "--chargeback", "--csv", *source)
    assert CHARGEBACK_CSV_2026_11.splitlines() == as_csv.output.splitlines()
    out = tmp_path / "chargeback.csv"
    written = run("report", "--month", "2026-11", "--chargeback", "--csv", "-o", str(out), *source)
    assert ("", CHARGEBACK_CSV_2026_11) == (written.output, out.read_text())


def test_report_filters_and_day_range(seeded: RunningCollector) -> None:
    result = run(
        "report",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-15",
        "--by",
        "developer",
        "--team",
        "platform",
        "--csv",
        "--db",
        str(seeded.store.path),
    )
    assert ["ana@acme.com", "bo@acme.com"] == [line.split(",")[0] for line in result.output.splitlines()[1:]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "2026-13"], "Error: --month: expected a month YYYY-MM, got '2026-13'"),
        (["--by", "colour"], "Error: --by: unknown dimension 'colour'"),
        (["--csv", "--json"], "Error: --csv and --json: choose one"),
        (["--chargeback", "--by", "team"], "Error: --chargeback: it is per month"),
        (["--month", "2026-11", "--from", "2026-11-01"], "Error: --month: give either --month or --from/--to"),
        (["--db", "/nonexistent/x.db"], "Error: no spendgate database at /nonexistent/x.db"),
        (["--api", "http://127.0.0.1:1"], "Error: cannot reach the collector API at http://127.0.0.1:1"),
    ],
)
def test_report_errors_are_one_line_and_exit_1(seeded: RunningCollector, args: list[str], message: str) -> None:
    db = [] if "--db" in args or "--api" in args else ["--db", str(seeded.store.path)]
    result = CliRunner().invoke(cli, ["report", *args, *db])
    assert 1 == result.exit_code
    assert 1 == len(result.output.strip().splitlines()), result.output
    assert result.output.startswith(message)


def test_api_errors_reach_the_cli_with_the_collectors_message(seeded: RunningCollector) -> None:
    result = CliRunner().invoke(cli, ["report", "--month", "2026-11", "--by", "team", "--api", seeded.api_url + "/x"])
    assert 1 == result.exit_code
    assert result.output.startswith("Error: collector API answered 404")


@pytest.mark.parametrize("command", ["report", "collector"])
def test_help_ends_with_an_example(command: str) -> None:
    result = run(command, "--help")
    assert 0 == result.exit_code
    lines = [line for line in result.output.splitlines() if line.strip()]
    example = next(i for i, line in enumerate(lines) if line.strip() == "Example:")
    assert all(line.strip().startswith("spendgate ") for line in lines[example + 1 : example + 3])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--retention-days", "-1"], "retention_days: Input should be greater than or equal to 0"),
        (["--otlp-grpc", "localhost"], "otlp_grpc: Value error, expected HOST:PORT, got 'localhost'"),
        (["--api", "127.0.0.1:99999"], "api: Value error, port 99999 out of range 0-65535"),
        (["--config", "/nonexistent/spendgate.yaml"], "cannot read config file /nonexistent/spendgate.yaml"),
    ],
)
def test_collector_config_errors_name_the_field(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["collector", *args])
    assert 1 == result.exit_code
    assert result.output.startswith("Error: ")
    assert message in result.output
