"""
The layer rules of docs/architecture.md hold: import-linter checks the
contracts in setup.cfg (scripts/test.sh also runs C{lint-imports} before
pytest), and a broken rule is reported as broken.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("am", "cli", "rest_compat", "rspec", "node", "schemas")


def _lint(tree: str) -> subprocess.CompletedProcess:
    """
    Run import-linter on the contracts in C{tree}/setup.cfg, in a process of
    its own (its graph must see only C{tree}'s packages).
    """
    script = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    return subprocess.run(
        [sys.executable, "-c", script], cwd=tree, env=dict(os.environ, PYTHONPATH=tree),
        capture_output=True, text=True, timeout=120,
    )


def test_contractsKept() -> None:
    """
    Every contract in setup.cfg is kept by the code as it stands.
    """
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_everyContractNamed() -> None:
    """
    The contracts docs/architecture.md describes are the ones checked.
    """
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    contracts = sorted(s.split(":")[-1] for s in parser.sections() if s.startswith("importlinter:contract:"))
    with open(os.path.join(ROOT, "docs", "architecture.md")) as f:
        text = f.read()
    for contract in contracts:
        assert f"`{contract}`" in text, contract


def test_brokenRuleReported(tmp_path) -> None:
    """
    The checker is not vacuous: a copy of the tree whose core imports
    twisted.web breaks the core contract.
    """
    copy = tmp_path / "tree"
    for package in PACKAGES:
        shutil.copytree(os.path.join(ROOT, package), copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "am" / "core" / "values.py", "a") as f:
        f.write("\nimport twisted.web.server  # noqa\n")
    shutil.copy(os.path.join(ROOT, "setup.cfg"), copy / "setup.cfg")
    done = _lint(str(copy))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "am.core is not allowed to import twisted.web" in done.stdout


def test_testCaseNamesExist() -> None:
    """
    Every C{test-case-name} header names test modules that exist.
    """
    import re

    missing = []
    for package in PACKAGES + ("twisted",):
        for directory, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(directory, name)
                with open(path, encoding="utf-8") as f:
                    found = re.search(r"test-case-name:\s*([\w.,]+)", f.readline())
                for module in found.group(1).split(",") if found else ():
                    if not os.path.exists(os.path.join(ROOT, *module.split(".")) + ".py"):
                        missing.append(f"{os.path.relpath(path, ROOT)}: {module}")
    assert missing == []
