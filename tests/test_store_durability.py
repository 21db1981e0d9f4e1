"""
SQLite durability: the booking database syncs every commit (C{synchronous=FULL})
unless the operator chooses otherwise in C{sqlite.synchronous}.
"""

from __future__ import annotations

import pytest

from am.ctl import service as ctl
from am.ctl.config import ConfigError, parseConfig
from am.store.sqlite import SQLiteDatabase, synchronousLevel


def _config(tmp_path, **extra):
    document = {"database": str(tmp_path / "marvin.db"), "listen": {"http": {"port": 0}}}
    document.update(extra)
    return parseConfig(document, checkFiles=False)


def test_fullByDefault(tmp_path) -> None:
    db = SQLiteDatabase(str(tmp_path / "a.db"))
    try:
        assert synchronousLevel(db._connection) == "full"
    finally:
        db.close()


def test_levelChosen(tmp_path) -> None:
    db = SQLiteDatabase(str(tmp_path / "a.db"), synchronous="normal")
    try:
        assert synchronousLevel(db._connection) == "normal"
    finally:
        db.close()
    with pytest.raises(ValueError):
        SQLiteDatabase(str(tmp_path / "b.db"), synchronous="sometimes")


def test_configDefaultAndChoice(tmp_path) -> None:
    assert _config(tmp_path).sqliteSynchronous == "full"
    assert _config(tmp_path, sqlite={"synchronous": "NORMAL"}).sqliteSynchronous == "normal"
    with pytest.raises(ConfigError, match="sqlite.synchronous"):
        _config(tmp_path, sqlite={"synchronous": "fast"})
    with pytest.raises(ConfigError, match="sqlite"):
        _config(tmp_path, sqlite={"durable": True})


def test_controllerOpensWithTheConfiguredLevel(tmp_path) -> None:
    from twisted.internet import reactor

    for level in ("full", "normal"):
        config = _config(tmp_path, database=str(tmp_path / f"{level}.db"), sqlite={"synchronous": level})
        controller = ctl.Controller(config, reactor)
        store = controller.storeFactory(config.database, reactor)
        try:
            assert synchronousLevel(store._database._connection) == level
        finally:
            store.close()
