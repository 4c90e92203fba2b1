"""Read ``uv.lock`` against ``pyproject.toml``: does the lock still describe the project, and what did it pin.

uv writes the project's own requirements into the lock (``[package.metadata] requires-dist``) and
treats the lock as stale when they differ from ``pyproject.toml``; :func:`stale_requirements` makes
the same comparison offline, so a test can fail before CI's ``uv sync --frozen`` installs an old
resolution. :func:`unsatisfied_pins` checks each pinned version against pyproject's ranges.

    python -m tests.support.lockfile diff uv.lock .venv-latest/versions.txt   # what `make test-latest` moved
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "spendgate"


def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)


def pyproject_requirements(pyproject: Path = ROOT / "pyproject.toml") -> set[str]:
    """Every requirement of the project and its extras, normalised as uv records them in the lock."""
    project = _load(pyproject)["project"]
    found = {_normal(Requirement(text)) for text in project.get("dependencies", [])}
    for extra, texts in project.get("optional-dependencies", {}).items():
        found |= {_normal(Requirement(text), extra) for text in texts}
    return found


def locked_requirements(lock: Path = ROOT / "uv.lock") -> set[str]:
    """The project's requirements as the lock recorded them when it was resolved."""
    metadata = _project_entry(_load(lock)).get("metadata", {})
    found = set()
    for entry in metadata.get("requires-dist", []):
        text = entry["name"]
        if entry.get("extras"):
            text += "[" + ",".join(sorted(entry["extras"])) + "]"
        text += entry.get("specifier", "")
        if entry.get("marker"):
            text += f"; {entry['marker']}"
        found.add(_normal(Requirement(text)))
    return found


def stale_requirements(pyproject: Path = ROOT / "pyproject.toml", lock: Path = ROOT / "uv.lock") -> set[str]:
    """Requirements in one file and not the other (empty when the lock matches pyproject)."""
    return pyproject_requirements(pyproject) ^ locked_requirements(lock)


def locked_versions(lock: Path = ROOT / "uv.lock") -> dict[str, str]:
    """``{canonical name: version}`` of every package the lock pins (the project itself left out)."""
    return {
        canonicalize_name(p["name"]): p["version"]
        for p in _load(lock)["package"]
        if p["name"] != PROJECT and "version" in p
    }


def unsatisfied_pins(pyproject: Path = ROOT / "pyproject.toml", lock: Path = ROOT / "uv.lock") -> list[str]:
    """Direct requirements whose pinned version falls outside pyproject's range."""
    pins = locked_versions(lock)
    bad = []
    for text in sorted(pyproject_requirements(pyproject)):
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name == PROJECT or name not in pins:
            continue
        if req.specifier and not req.specifier.contains(pins[name], prereleases=True):
            bad.append(f"{req.name}=={pins[name]} is outside {req.specifier}")
    return bad


def freeze_versions(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` from ``pip freeze`` output (editable and URL lines skipped)."""
    found = {}
    for line in path.read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            found[canonicalize_name(name)] = version
    return found


def diff(lock: Path, freeze: Path) -> list[str]:
    """One line per package whose version differs between the lock and an installed environment."""
    pinned, installed = locked_versions(lock), freeze_versions(freeze)
    lines = []
    for name in sorted(pinned.keys() | installed.keys()):
        old, new = pinned.get(name, "-"), installed.get(name, "-")
        if old != new and new != "-":
            lines.append(f"  {name}: {old} -> {new}")
    return lines


def installed_with(extras: tuple[str, ...] = (), lock: Path = ROOT / "uv.lock") -> set[str]:
    """Canonical names of every package a locked install of the project with ``extras`` brings.

    ``installed_with()`` is a plain ``pip install spendgate``; markers are ignored, so a package
    needed on one platform only counts everywhere.
    """
    data = _load(lock)
    packages = {canonicalize_name(p["name"]): p for p in data["package"]}
    project = _project_entry(data)
    todo = [*project.get("dependencies", [])]
    for extra in extras:
        todo += project.get("optional-dependencies", {}).get(extra, [])
    found: set[str] = set()
    while todo:
        dep = todo.pop()
        name = canonicalize_name(dep["name"])
        package = packages.get(name, {})
        for extra in dep.get("extra", []):
            todo += package.get("optional-dependencies", {}).get(extra, [])
        if name in found or name == PROJECT:
            continue
        found.add(name)
        todo += package.get("dependencies", [])
    return found


def _project_entry(lock: dict[str, Any]) -> dict[str, Any]:
    for package in lock["package"]:
        if package["name"] == PROJECT:
            return package
    raise LookupError(f"uv.lock has no entry for the project {PROJECT!r}")


def _normal(req: Requirement, extra: str | None = None) -> str:
    """A requirement as one comparable string: canonical name, sorted extras, specifier, marker."""
    text = canonicalize_name(req.name)
    if req.extras:
        text += "[" + ",".join(sorted(req.extras)) + "]"
    text += ",".join(sorted(str(s) for s in req.specifier))
    marker = str(req.marker) if req.marker else ""
    if extra:
        clause = f'extra == "{extra}"'
        marker = (
            f"({marker}) and {clause}"
            if marker and " or " in marker
            else (f"{marker} and {clause}" if marker else clause)
        )
    return f"{text}; {marker}" if marker else text


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "diff":
        lines = diff(Path(argv[1]), Path(argv[2]))
        print("\n".join(lines) if lines else "  (none: the newest allowed releases are the locked ones)")
        return 0
    print("usage: python -m tests.support.lockfile diff UV_LOCK FREEZE_FILE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
