"""``spendgate up --demo`` as ``make demo`` runs it: everything starts, traffic is priced and reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SPENDGATE = [sys.executable, "-c", "from spendgate_app.cli import main; main()"]


def test_up_demo_prints_priced_rows_for_three_developers(tmp_path: Path) -> None:
    ports = [
        "--proxy-listen",
        "127.0.0.1:0",
        "--api-listen",
        "127.0.0.1:0",
        "--otlp-grpc",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
        "--otlp-http",
        "127.0.0.1:0",
        "--simulator-port",
        "0",
    ]
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENAI_API_KEY"}
    run = subprocess.run(
        [*SPENDGATE, "up", "--demo", "--exit-after-demo", "--data-dir", str(tmp_path / "data"), *ports],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "simulated provider" in out
    assert "demo: 12 calls answered; spans stored" in out
    spend_table, _, coverage_table = out.partition("how each repo was learnt")
    rows = {line.split()[0]: line.split() for line in spend_table.splitlines() if "@acme.example" in line}
    assert set(rows) == {"ana@acme.example", "bo@acme.example", "cy@acme.example"}
    assert rows["cy@acme.example"][1:4] == ["mobile", "acme-ios", "4"]
    for cols in rows.values():
        assert float(cols[-2]) > 0  # priced, not zero
        assert cols[-1] == "0"  # nothing unpriced
    # Each developer's repo reached the gateway the way Cursor's would: hook, prompt workspace, model alias.
    sources = {tuple(line.split()[:3:2]) for line in coverage_table.splitlines() if " attributed " in line}
    assert {("ana@acme.example", "cursor-hook"), ("bo@acme.example", "prompt-workspace")} <= sources
    assert ("cy@acme.example", "model-alias") in sources
    assert "Traceback" not in run.stderr
    keys_text = (tmp_path / "data" / "keys.yaml").read_text()
    assert "sg-" not in keys_text.replace('prefix: "sg-', "").replace("prefix: sg-", "")

    # A second run reuses the data directory: old demo keys are revoked, spend accumulates.
    again = subprocess.run(
        [*SPENDGATE, "up", "--demo", "--exit-after-demo", "--data-dir", str(tmp_path / "data"), *ports],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert again.returncode == 0, again.stderr
    cy = next(line.split() for line in again.stdout.splitlines() if line.startswith("cy@acme.example"))
    assert cy[3] == "8"
