"""``uv.lock`` describes ``pyproject.toml``: CI installs with ``uv sync --frozen``, which trusts the lock blindly."""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

from pathlib import Path

from tests.support import lockfile


def test_the_lock_records_exactly_the_requirements_in_pyproject() -> None:
    assert set() == lockfile.stale_requirements(), (
        "pyproject.toml and uv.lock disagree: run `make lock-check`, then `uv lock`"
    )


def test_every_pinned_direct_requirement_is_inside_pyprojects_range() -> None:
    assert [] == lockfile.unsatisfied_pins()


def test_a_changed_range_in_pyproject_is_seen_as_stale(tmp_path: Path) -> None:
    text = (lockfile.ROOT / "pyproject.toml").read_text()
    assert '"click>=8.1"' in text
    changed = tmp_path / "pyproject.toml"
    changed.write_text(text.replace('"click>=8.1"', '"click>=8.2"'))
    assert {"click>=8.1", "click>=8.2"} == lockfile.stale_requirements(changed)


def test_an_added_extra_requirement_is_seen_as_stale(tmp_path: Path) -> None:
    text = (lockfile.ROOT / "pyproject.toml").read_text()
    changed = tmp_path / "pyproject.toml"
    changed.write_text(text.replace('    "pytest>=8",\n', '    "pytest>=8",\n    "hypothesis>=6",\n'))
    assert {'hypothesis>=6; extra == "dev"'} == lockfile.stale_requirements(changed)


def test_diff_lists_only_moved_packages(tmp_path: Path) -> None:
    pins = lockfile.locked_versions()
    freeze = tmp_path / "versions.txt"
    freeze.write_text(f"click==99.0\norjson=={pins['orjson']}\n-e file:///somewhere\n")
    assert [f"  click: {pins['click']} -> 99.0"] == lockfile.diff(lockfile.ROOT / "uv.lock", freeze)


def test_installed_with_follows_extras_through_the_lock() -> None:
    base = lockfile.installed_with()
    assert {"click", "pyyaml"} <= base
    assert "aiohttp" not in base
    assert "aiohttp" in lockfile.installed_with(("proxy",))
    assert "sqlite-utils" in lockfile.installed_with(("dev",))  # dev -> spendgate[all] -> collector
