"""The README's "While it runs" block, pasted in one go, against a running ``spendgate up --demo``.

The block is read from README.md at test time and run verbatim with bash, from a directory laid
out like a checkout (``.venv/bin/spendgate`` links to this venv's command, and ``up`` keeps its
data in ``spendgate-data/`` there), against the default ports the README names. Every command
must work the first time: the key just created is accepted at once, the stream arrives, the
report prints the team and repo. When a default port is taken on this machine (another
``spendgate up``), the test is skipped: the block cannot be pointed anywhere else.
"""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
# spendgate up's defaults: proxy, collector API, OTLP gRPC and HTTP, control plane, simulated provider.
DEFAULT_PORTS = (8787, 8788, 4317, 4318, 4320, 8789)


def readme_block() -> str:
    """The first ```bash block after "While it runs" in README.md, as written."""
    text = (REPO / "README.md").read_text()
    _, found, after = text.partition("While it runs")
    assert found, "README.md has no 'While it runs' section"
    _, fence, rest = after.partition("```bash\n")
    assert fence, "no ```bash block after 'While it runs'"
    block, end, _ = rest.partition("```")
    assert end, "the ```bash block after 'While it runs' is not closed"
    return block


def _taken(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def test_the_readme_block_works_verbatim_the_first_time(tmp_path: Path) -> None:
    block = readme_block()
    assert ".venv/bin/spendgate keys create" in block and "curl" in block  # it is the block we mean
    taken = [p for p in DEFAULT_PORTS if _taken(p)]
    if taken:
        pytest.skip(f"the README's block uses spendgate up's default ports; {taken} taken on this machine")
    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("the README's block needs bash and curl")
    spendgate = Path(sys.executable).parent / "spendgate"
    assert spendgate.exists(), f"{spendgate} is missing: install the project (make .venv/.installed)"
    checkout = tmp_path / "checkout"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "spendgate").symlink_to(spendgate)
    # A user's shell, minus anything that would send `up` elsewhere (a real provider, other ports).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPENDGATE_", "OTEL_")) and k != "OPENAI_API_KEY"}

    up = subprocess.Popen(
        [str(spendgate), "up", "--demo"],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert up.stdout is not None
        for line in up.stdout:
            out.append(line)
            if "Ctrl-C stops everything" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started = time.monotonic()
    try:
        while not ready.wait(0.2):
            if up.poll() is not None:
                err = up.stderr.read()  # type: ignore[union-attr]
                if "cannot listen on" in err or "cannot start" in err:  # taken since the check above
                    pytest.skip(f"spendgate up could not bind its default ports: {err.strip()}")
                pytest.fail(f"spendgate up --demo exited:\n{''.join(out)}\n{err}")
            if time.monotonic() > started + 120:
                up.kill()
                pytest.fail(f"spendgate up --demo did not finish its demo:\n{''.join(out)}")

        run = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert 0 == run.returncode, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
        stream, done, report = run.stdout.partition("data: [DONE]")
        # curl: the new key was accepted on its first call and the answer streamed to the end.
        assert done, f"no complete stream from curl:\n{run.stdout}"
        assert '"error"' not in stream and "chat.completion.chunk" in stream, stream
        assert "created key_" in run.stderr  # `keys create` said where it wrote the key (the key went to $KEY)
        # report: the month's spend by team and repo, with the demo's platform / acme-api row.
        rows = [line.split() for line in report.splitlines()]
        assert any(row[:2] == ["platform", "acme-api"] for row in rows), report

        # The call the block made is recorded for the key's developer (spans are exported every second).
        month = datetime.now(UTC).strftime("%Y-%m")
        deadline = time.monotonic() + 20
        while True:
            spend = httpx.get(
                "http://127.0.0.1:8788/api/spend", params={"month": month, "group_by": "developer"}
            ).json()
            if any(r.get("developer") == "you@acme.com" for r in spend["rows"]):
                break
            assert time.monotonic() < deadline, f"the README's call was not recorded: {spend}"
            time.sleep(0.2)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            _, err = up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            err = ""
        reader.join(5)
    assert "Traceback" not in (err or ""), err
