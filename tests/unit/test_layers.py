"""The import contracts in pyproject.toml ([tool.importlinter], run by `make lint`) can fail: each
test runs lint-imports with our pyproject.toml over a copy of controller/dra_kwok, unmodified (both
contracts kept) or with one import added that a contract forbids (that contract broken, by name)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "controller" / "dra_kwok"
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def contract_names() -> dict[str, str]:
    """Each contract's name by its id, as pyproject.toml gives them."""
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return {contract["id"]: contract["name"] for contract in config["contracts"]}


def lint_imports(tmp_path: Path, additions: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Runs lint-imports with a copy of our pyproject.toml over a copy of the package with each
    `additions` text appended to the module at that path (relative to the package)."""
    controller = tmp_path / "controller"
    shutil.copytree(PACKAGE, controller / "dra_kwok", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    for module, text in additions.items():
        with (controller / "dra_kwok" / module).open("a") as f:
            f.write("\n" + text)
    # The copy comes first on the path, before the editable install of the checkout.
    env = {**os.environ, "PYTHONPATH": str(controller)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(tmp_path / "pyproject.toml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_contracts(result: subprocess.CompletedProcess[str], broken: set[str]) -> None:
    """lint-imports exited non-zero when `broken` (contract ids) is not empty, and reported exactly
    those contracts broken and the others kept."""
    output = result.stdout + result.stderr
    assert (result.returncode != 0) == bool(broken), output
    names = contract_names()
    assert broken <= names.keys()
    for contract, name in names.items():
        assert f"{name} {'BROKEN' if contract in broken else 'KEPT'}" in result.stdout, output
    assert f"{len(names) - len(broken)} kept, {len(broken)} broken" in result.stdout, output


def test_the_package_as_it_is_keeps_both_contracts(tmp_path: Path) -> None:
    assert_contracts(lint_imports(tmp_path, {}), broken=set())


def test_core_importing_shell_breaks_the_layers(tmp_path: Path) -> None:
    result = lint_imports(tmp_path, {"core/names.py": "from ..shell import settings\n"})
    assert_contracts(result, broken={"layers"})
    assert "dra_kwok.core is not allowed to import dra_kwok.shell" in result.stdout
    assert "dra_kwok.core.names -> dra_kwok.shell.settings" in result.stdout


def test_every_upward_import_is_reported_lazy_ones_too(tmp_path: Path) -> None:
    """One run (lint-imports reports each illegal import): a function-level import counts as much
    as a module-level one; shell may not import crd, nor crd cli (cli may import crd: it does)."""
    lazy = "def _lazy() -> object:\n    from ..shell import settings\n\n    return settings\n"
    result = lint_imports(
        tmp_path,
        {"core/quantity.py": lazy, "shell/health.py": "from .. import crd\n", "crd.py": "from . import cli\n"},
    )
    assert_contracts(result, broken={"layers"})
    for chain in (
        "dra_kwok.core.quantity -> dra_kwok.shell.settings",
        "dra_kwok.shell.health -> dra_kwok.crd",
        "dra_kwok.crd -> dra_kwok.cli",
    ):
        assert chain in result.stdout, result.stdout


def test_core_importing_kopf_breaks_the_pure_core(tmp_path: Path) -> None:
    result = lint_imports(tmp_path, {"core/names.py": "import kopf\n"})
    assert_contracts(result, broken={"pure-core"})
    assert "dra_kwok.core is not allowed to import kopf" in result.stdout
    assert "dra_kwok.core.names -> kopf" in result.stdout
