"""The layout's import rules, read from the source with ``ast``: one package per program, and who may import whom.

Every ``import`` counts wherever it sits (module level, inside a function, under ``TYPE_CHECKING``),
and so does a string that is a whole import path of a module in this tree
(``"spendgate_proxy.cli:proxy_command"``, not ``"spendgate.team"``), the way lazy registries name
modules. The rules (README, "Layout"):

- the proxy and the collector import each other nowhere, and share only ``spendgate_semconv``;
- the SDK (``spendgate``) imports no program: neither proxy, collector, simulator nor the CLI package;
- the simulator and semconv import no other first-party package (the simulator may use semconv).

Only ``spendgate_app`` (the ``spendgate`` command, ``up`` and the demo) composes the programs.
"""

# ruff: noqa: SIM300

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "spendgate_semconv": ROOT / "semconv" / "spendgate_semconv",
    "spendgate": ROOT / "sdk" / "spendgate",
    "spendgate_proxy": ROOT / "proxy" / "spendgate_proxy",
    "spendgate_collector": ROOT / "collector" / "spendgate_collector",
    "spendgate_simulator": ROOT / "simulator" / "spendgate_simulator",
    "spendgate_app": ROOT / "app" / "spendgate_app",
}
# "package.module" or "package.module:attribute" (a bare "spendgate" is the distribution's name).
_IMPORT_STRING = re.compile(r"(?P<module>[A-Za-z_]\w*(?:\.\w+)+)(?::\w+)?|(?P<package>[A-Za-z_]\w*):\w+")


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def _is_module(dotted: str) -> bool:
    """True when ``dotted`` names a first-party module or package that exists in this tree."""
    top, *rest = dotted.split(".")
    if top not in PACKAGES:
        return False
    path = PACKAGES[top].joinpath(*rest)
    return (path / "__init__.py").is_file() or path.with_suffix(".py").is_file()


def _imports(package: str) -> list[tuple[str, int, str]]:
    """(file relative to the repo, line, first-party package) for every import of another package."""
    found = []
    for path in sorted(PACKAGES[package].rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []  # relative: this package
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = _IMPORT_STRING.fullmatch(node.value)
                module = match and (match["module"] or match["package"])
                names = [module] if module and _is_module(module) else []
            else:
                continue
            for name in names:
                top = _top(name)
                if top in PACKAGES and top != package:
                    found.append((str(path.relative_to(ROOT)), node.lineno, top))
    return found


def _importing(package: str, targets: set[str]) -> list[str]:
    """Where ``package`` imports one of ``targets``, as ``path:line imports target``."""
    return [f"{path}:{line} imports {top}" for path, line, top in _imports(package) if top in targets]


def _breaking(package: str, allowed: set[str]) -> list[str]:
    """Where ``package`` imports a first-party package outside ``allowed``."""
    return _importing(package, set(PACKAGES) - allowed - {package})


def test_proxy_and_collector_import_each_other_nowhere() -> None:
    assert [] == _importing("spendgate_proxy", {"spendgate_collector"})
    assert [] == _importing("spendgate_collector", {"spendgate_proxy"})


def test_the_sdk_imports_no_program() -> None:
    programs = {"spendgate_proxy", "spendgate_collector", "spendgate_simulator", "spendgate_app"}
    assert [] == _importing("spendgate", programs)


def test_proxy_and_collector_share_only_semconv() -> None:
    assert [] == _breaking("spendgate_proxy", allowed={"spendgate_semconv"})
    assert [] == _breaking("spendgate_collector", allowed={"spendgate_semconv"})


def test_simulator_and_semconv_stand_alone() -> None:
    assert [] == _breaking("spendgate_simulator", allowed={"spendgate_semconv"})
    assert [] == _breaking("spendgate_semconv", allowed=set())


def test_the_rules_see_function_level_and_registry_imports() -> None:
    # The composition root imports the programs only inside functions and through its command
    # registry's strings; a scanner that missed either would pass the rules above vacuously.
    seen = {(Path(path).name, top) for path, _, top in _imports("spendgate_app")}
    assert {("up.py", "spendgate_collector"), ("cli.py", "spendgate_collector"), ("cli.py", "spendgate_proxy")} <= seen
    assert [] == [name for name, path in PACKAGES.items() if not (path / "__init__.py").is_file()]
