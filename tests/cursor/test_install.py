"""``spendgate cursor install-hooks``: writes the script, merges hooks.json, keeps other hooks."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from spendgate_proxy.cursor.cli import cursor_group
from spendgate_proxy.cursor.install import HOOK_EVENTS, SCRIPT_RELPATH, install_hooks, script_source


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home" / ".spendgate" / "cursor.json"
    monkeypatch.setenv("SPENDGATE_CURSOR_CONFIG", str(path))
    return path


def read_hooks(repo: Path) -> dict:
    return json.loads((repo / ".cursor" / "hooks.json").read_text())


def test_fresh_install(tmp_path: Path, config: Path):
    repo = tmp_path / "acme-api"
    repo.mkdir()
    result = CliRunner().invoke(cursor_group, ["install-hooks", str(repo), "--gateway", "https://spend.acme.dev"])
    assert result.exit_code == 0, result.output
    hooks = read_hooks(repo)
    command = "python3 .cursor/hooks/spendgate-report.py --gateway https://spend.acme.dev"
    assert hooks == {"version": 1, "hooks": {e: [{"command": command}] for e in HOOK_EVENTS}}
    script = repo / SCRIPT_RELPATH
    assert script.read_text() == script_source()
    assert script.stat().st_mode & stat.S_IXUSR
    assert json.loads(config.read_text()) == {"gateway": "https://spend.acme.dev", "key_env": "SPENDGATE_KEY"}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_merge_keeps_other_hooks_and_reinstall_replaces_ours(tmp_path: Path, config: Path):
    repo = tmp_path / "r"
    (repo / ".cursor").mkdir(parents=True)
    other = {"command": "./hooks/format.sh"}
    (repo / ".cursor" / "hooks.json").write_text(
        json.dumps({"version": 1, "hooks": {"afterFileEdit": [other], "stop": [{"command": "./audit.sh"}]}, "x": 1})
    )
    install_hooks(repo, "https://a.example", events=HOOK_EVENTS)
    again = install_hooks(repo, "https://b.example", key_env="ACME_KEY")
    assert again.replaced == len(HOOK_EVENTS)
    hooks = read_hooks(repo)
    ours = {"command": "python3 .cursor/hooks/spendgate-report.py --gateway https://b.example"}
    assert hooks["x"] == 1
    assert hooks["hooks"]["stop"] == [{"command": "./audit.sh"}]
    assert hooks["hooks"]["afterFileEdit"] == [other, ours]
    assert hooks["hooks"]["beforeSubmitPrompt"] == [ours]
    assert json.loads(config.read_text())["key_env"] == "ACME_KEY"


def test_refuses_to_clobber_unreadable_file(tmp_path: Path, config: Path):
    (tmp_path / ".cursor").mkdir()
    (tmp_path / ".cursor" / "hooks.json").write_text("{ not json")
    result = CliRunner().invoke(cursor_group, ["install-hooks", str(tmp_path)])
    assert result.exit_code == 1 and "not valid JSON" in result.output
    assert (tmp_path / ".cursor" / "hooks.json").read_text() == "{ not json"
    (tmp_path / ".cursor" / "hooks.json").write_text('{"hooks": {"stop": {"command": "x"}}}')
    with pytest.raises(ValueError, match="expected a list"):
        install_hooks(tmp_path, None, events=("stop",))


def test_store_key(tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ACME_KEY", "sg-secret")
    install_hooks(tmp_path, None, key_env="ACME_KEY", store_key=True)
    assert json.loads(config.read_text()) == {"key_env": "ACME_KEY", "key": "sg-secret"}
    monkeypatch.delenv("ACME_KEY")
    with pytest.raises(ValueError, match="ACME_KEY"):
        install_hooks(tmp_path, None, key_env="ACME_KEY", store_key=True)


def test_installed_command_runs_from_the_project_root(tmp_path: Path, config: Path):
    # Run the exact registered command through a shell from the repo root, as Cursor does for
    # project hooks; unconfigured key, so it must just answer and exit 0.
    install_hooks(tmp_path, "http://127.0.0.1:9")
    command = read_hooks(tmp_path)["hooks"]["beforeSubmitPrompt"][0]["command"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPENDGATE_")}
    env["SPENDGATE_CURSOR_CONFIG"] = str(tmp_path / "none.json")
    done = subprocess.run(
        shlex.split(command), cwd=tmp_path, input=b'{"hook_event_name": "beforeSubmitPrompt"}', capture_output=True,
        env=env, timeout=10,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, b'{"continue": true}\n', b"")
