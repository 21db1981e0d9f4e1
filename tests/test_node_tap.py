"""
Tests for L{node.tap} and the C{marvind} twistd plugin.
"""

from __future__ import annotations

import io
import os
import stat
import sys

import yaml
from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from node import tap
from node.agent import MarvindAgent
from node.config import MarvindConfig
from node.testing import writeControllerPKI


def writeConfig(base: str) -> str:
    """
    Write a complete marvind configuration (PKI, hooks) under C{base}.
    """
    pki = writeControllerPKI(os.path.join(base, "pki"))
    hooks = {}
    for action in ("deploy", "start", "stop"):
        path = os.path.join(base, action)
        with open(path, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(path, stat.S_IRWXU)
        hooks[action] = path
    path = os.path.join(base, "marvind.conf")
    with open(path, "w") as f:
        yaml.safe_dump({
            "controller": {"url": "https://127.0.0.1:8443/v1", "ca": pki.caCertificate},
            "node": {"id": "3"},
            "tls": {"certificate": pki.clientCertificate, "key": pki.clientKey},
            "state_directory": os.path.join(base, "state"),
            "hooks": hooks,
        }, f)
    return path


class PluginTests(SynchronousTestCase):
    """
    twistd finds the plugin.
    """

    def test_found(self) -> None:
        """
        C{getPlugins(IServiceMaker)} finds C{marvind}, a valid service maker
        whose options are L{tap.Options}.
        """
        makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
        self.assertIn("marvind", makers)
        maker = makers["marvind"]
        self.assertTrue(verifyObject(IServiceMaker, maker))
        self.assertIs(maker.options, tap.Options)


class OptionsTests(SynchronousTestCase):
    """
    L{tap.Options}, L{tap.makeService} and L{tap.main}.
    """

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)

    def test_makeService(self) -> None:
        """
        A valid file gives the agent service, using the given reactor; the
        state directory is created.
        """
        options = tap.Options()
        options.parseOptions(["--config", writeConfig(self.base)])
        self.assertIsInstance(options["configuration"], MarvindConfig)
        reactor = MemoryReactorClock()
        service = tap.makeService(options, reactor=reactor)
        self.assertIsInstance(service, MarvindAgent)
        self.assertEqual(service.name, "marvind")
        self.assertTrue(os.path.isdir(os.path.join(self.base, "state")))
        service.startService()
        # the first heartbeat, and the first scan of results to ship
        self.assertEqual(len(reactor.getDelayedCalls()), 2)
        service.stopService()
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_defaultPath(self) -> None:
        """
        The configuration file defaults to C{/etc/marvind.conf}.
        """
        self.assertEqual(tap.Options()["config"], "/etc/marvind.conf")

    def test_badConfig(self) -> None:
        """
        A bad configuration is a usage error with one clear message.
        """
        path = os.path.join(self.base, "bad.conf")
        with open(path, "w") as f:
            f.write("controller: {url: 'ftp://x'}\n")
        with self.assertRaises(UsageError) as caught:
            tap.Options().parseOptions(["--config", path])
        self.assertEqual(
            str(caught.exception), f"{path}: controller.url: must be an https:// URL, not 'ftp://x'"
        )

    def test_mainBadConfig(self) -> None:
        """
        The console script prints the message on standard error and exits 2.
        """
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        missing = os.path.join(self.base, "missing.conf")
        with self.assertRaises(SystemExit) as caught:
            tap.main(["--config", missing])
        self.assertEqual(caught.exception.code, 2)
        self.assertEqual(stderr.getvalue(), f"marvind: cannot read {missing}: No such file or directory\n")
