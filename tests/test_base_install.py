"""A real ``pip install spendgate`` (no extras) in a fresh venv: the CLI's promises hold there too.

``tests/test_no_extras.py`` fakes a minimal install by refusing the extras' imports, which cannot see
a command leaning on a dev-only package; this builds one. A venv from ``.tools/bin/uv``, exactly the
base dependencies ``uv.lock`` pins (``uv export``: no extras, with hashes) installed ``--no-deps``,
then the project itself, editable and ``--no-deps``. Everything comes from uv's cache, which
``make``'s ``uv sync`` filled (about 2 s; measured 1.9 s for the venv on the 2-core dev machine); only
when the cache lacks a package does uv go to the registry. ``SPENDGATE_TEST_BASE_INSTALL=0`` skips it.
"""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.test_no_extras import (
    MESSAGE,
    assert_every_help_works,
    assert_works_or_names_its_extra,
    help_argvs,
    leaf_argvs,
)

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".tools" / "bin" / "uv"
SKIP_ENV = "SPENDGATE_TEST_BASE_INSTALL"

pytestmark = pytest.mark.skipif(os.environ.get(SKIP_ENV) == "0", reason=f"{SKIP_ENV}=0")


def _uv(*args: str, venv: Path | None = None, offline_first: bool = False) -> str:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("UV_PROJECT_ENVIRONMENT", None)
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
    tries = [["--offline"], []] if offline_first else [[]]
    for extra in tries:
        done = subprocess.run([str(UV), *args, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            return done.stdout
    raise AssertionError(f"uv {' '.join(args)} failed: {done.stderr}")


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not UV.exists():
        pytest.skip(f"{UV} is missing: `make .venv/.installed` installs the pinned uv")
    where = tmp_path_factory.mktemp("base-install")
    venv = where / "venv"
    _uv("venv", "-q", str(venv), "--python", sys.executable)
    requirements = where / "requirements.txt"
    requirements.write_text(_uv("export", "--frozen", "--no-emit-project", "--no-header"))
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["build-constraint-dependencies"]
    constraints = where / "build-constraints.txt"
    constraints.write_text("\n".join(build) + "\n")
    _uv("pip", "install", "-q", "--no-deps", "-r", str(requirements), venv=venv, offline_first=True)
    install_project = ("pip", "install", "-q", "--no-deps", "--build-constraints", str(constraints), "-e", ".")
    _uv(*install_project, venv=venv, offline_first=True)
    return venv


def _run(cwd: Path, *args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SPENDGATE_", "OTEL_", "VIRTUAL_ENV", "PYTHON"))}
    # tests/ is not installed: PYTHONPATH brings the runner (tests.support.no_extras); spendgate and
    # its dependencies come from the venv alone.
    env = {**clean, "HOME": str(cwd), "SPENDGATE_API": "http://127.0.0.1:9", "PYTHONPATH": str(ROOT)}
    args_ = [str(a) for a in args]
    return subprocess.run(args_, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=120)


def _runner(venv: Path, cwd: Path, mode: str, argvs: list[list[str]] | None = None) -> Any:
    done = _run(cwd, venv / "bin" / "python", "-m", "tests.support.no_extras", mode, stdin=json.dumps(argvs or []))
    assert 0 == done.returncode, done.stderr
    return json.loads(done.stdout)


def test_the_venv_has_the_base_only(venv: Path, tmp_path: Path) -> None:
    modules = ("aiohttp", "pydantic", "httpx", "sqlite_utils", "orjson", "yaml", "grpc")
    code = f"import importlib.util as u; print(*(m for m in {modules!r} if u.find_spec(m)))"
    done = _run(tmp_path, venv / "bin" / "python", "-c", code)
    assert "yaml grpc" == done.stdout.strip(), done.stderr


def test_the_cli_in_a_base_install(venv: Path, tmp_path: Path) -> None:
    spendgate = venv / "bin" / "spendgate"
    done = _run(tmp_path, spendgate, "--help")
    assert 0 == done.returncode and done.stdout.startswith("Usage: spendgate"), done.stderr

    done = _run(tmp_path, spendgate, "up")
    assert (1, "") == (done.returncode, done.stdout)
    assert MESSAGE.fullmatch(done.stderr), done.stderr
    assert done.stderr.startswith("Error: 'spendgate up' needs the 'all' extra: pip install 'spendgate[all]'")

    done = _run(tmp_path, spendgate, "keys", "create", "--user", "ana@acme.com", "--team", "platform")
    assert 0 == done.returncode and done.stdout.startswith("sg-"), done.stderr
    done = _run(tmp_path, spendgate, "keys", "list")
    assert 0 == done.returncode, done.stderr
    assert ["ana@acme.com", "platform", "active"] == done.stdout.splitlines()[1].split()[2:5]

    tree = _runner(venv, tmp_path, "tree")
    assert_every_help_works(_runner(venv, tmp_path, "run", help_argvs(tree)))
    assert_works_or_names_its_extra(_runner(venv, tmp_path, "run", leaf_argvs(tree)))
