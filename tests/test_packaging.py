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
