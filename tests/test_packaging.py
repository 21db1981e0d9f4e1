"""
What a normal install ships: every package, the twistd plugins (whose folder
must have no __init__.py), the schemas and the entry points.
"""

from __future__ import annotations

import configparser
import os

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    return parser


def test_everyPackageListed() -> None:
    """
    setup.cfg lists exactly the packages of the tree (tests excepted), plus twisted.plugins.
    """
    listed = set(_setup()["options"]["packages"].split())
    found = set()
    for top in ("am", "cli", "rspec", "rest_compat", "node", "schemas"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            if "__init__.py" in files:
                found.add(os.path.relpath(folder, ROOT).replace(os.sep, "."))
    assert listed == found | {"twisted.plugins"}


def test_pluginFolderHasNoInit() -> None:
    """
    twistd skips a plugin folder that has an __init__.py.
    """
    assert not os.path.exists(os.path.join(ROOT, "twisted", "plugins", "__init__.py"))
    names = {p.tapname for p in getPlugins(IServiceMaker)}
    assert {"marvinctld", "marvind"} <= names


def test_entryPointsAndData() -> None:
    """
    The console scripts point at real functions; shipped data files exist.
    """
    import importlib

    setup = _setup()
    for line in setup["options.entry_points"]["console_scripts"].strip().splitlines():
        name, _, target = (part.strip() for part in line.partition("="))
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name
    for files in setup["options.data_files"].values():
        for path in files.split(","):
            assert os.path.isfile(os.path.join(ROOT, path.strip())), path
    for pattern in setup["options.package_data"]["schemas"].split(","):
        ext = pattern.strip().lstrip("*")
        assert any(f.endswith(ext) for f in os.listdir(os.path.join(ROOT, "schemas")))


def _run(code: str) -> "subprocess.CompletedProcess[str]":
    import subprocess
    import sys

    # Outside the tree, so that only the installed (or editable) Marvin is seen.
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")


def test_pluginsSeenOutsideTheTree() -> None:
    """
    twistd's plugin scan finds both plugins from any directory (an editable
    install puts the tree on sys.path through setup.cfg's package_dir).
    """
    out = _run(
        "from twisted.plugin import getPlugins\n"
        "from twisted.application.service import IServiceMaker\n"
        "print(sorted(p.tapname for p in getPlugins(IServiceMaker)))"
    )
    assert out.returncode == 0, out.stderr
    assert "'marvinctld'" in out.stdout and "'marvind'" in out.stdout


def test_agentInstallsLean() -> None:
    """
    The core requirements (what "pip install marvin" pulls, the agent's) hold
    no XML security, database driver or controller-only library, and the
    agent imports none of them.
    """
    core = _setup()["options"]["install_requires"].lower()
    for heavy in ("lxml", "xmlsec", "psycopg"):
        assert heavy not in core
        assert heavy in _setup()["options.extras_require"]["controller"] + _setup()["options.extras_require"]["postgres"]
    blocker = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('lxml', 'xmlsec', 'psycopg', 'am', 'rspec', 'rest_compat'):\n"
        "            raise ImportError('the agent must not import ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import node.tap, node.agent, node.client, node.config, node.hooks, node.state, node.facts, node.wire\n"
        "node.tap.makeService\n"
    )
    out = _run(blocker)
    assert out.returncode == 0, out.stderr
