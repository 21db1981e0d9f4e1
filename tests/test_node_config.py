"""
Tests for L{node.config}: the example file, a complete valid file, and one
clear error message for each kind of bad configuration.
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile

import yaml
from twisted.trial.unittest import SynchronousTestCase

from node.config import ConfigError, loadConfig, parseConfig
from node.testing import ControllerPKI, writeControllerPKI

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "files", "etc", "marvind.conf")

_cache: dict[str, ControllerPKI] = {}


def _pki(name: str) -> ControllerPKI:
    """
    A throw-away PKI, made once per module run.
    """
    if name not in _cache:
        base = tempfile.mkdtemp(prefix="marvind-config-")
        atexit.register(shutil.rmtree, base, True)
        _cache[name] = writeControllerPKI(os.path.join(base, name))
    return _cache[name]


class ConfigTests(SynchronousTestCase):
    """
    L{loadConfig} and L{parseConfig}.
    """

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        pki = _pki("one")
        hooks = {}
        for action in ("deploy", "start", "stop", "check"):
            path = os.path.join(self.base, action)
            with open(path, "w") as f:
                f.write("#!/bin/sh\nexit 0\n")
            os.chmod(path, stat.S_IRWXU)
            hooks[action] = path
        self.data = {
            "controller": {"url": "https://ctl.example:8443/v1/", "ca": pki.caCertificate},
            "node": {"id": 42},
            "tls": {"certificate": pki.clientCertificate, "key": pki.clientKey},
            "state_directory": os.path.join(self.base, "state"),
            "hooks": hooks,
        }

    def load(self, data: object) -> object:
        path = os.path.join(self.base, "marvind.conf")
        with open(path, "w") as f:
            yaml.safe_dump(data, f)
        return loadConfig(path)

    def assertConfigError(self, data: object, message: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            self.load(data)
        self.assertIn(message, str(caught.exception))
        self.assertTrue(str(caught.exception).startswith(os.path.join(self.base, "marvind.conf") + ": "))

    def test_example(self) -> None:
        """
        The shipped example names every key and parses to the documented
        values.
        """
        with open(EXAMPLE) as f:
            config = parseConfig(yaml.safe_load(f), checkFiles=False)
        self.assertEqual(config.controllerURL, "https://ctl.example:8443/v1")
        self.assertEqual(config.nodeId, "42")
        self.assertEqual(config.heartbeatPeriod, 60)
        self.assertEqual(config.heartbeatJitter, 0.1)
        self.assertEqual(config.taskLimit, 10)
        self.assertEqual(sorted(config.hooks), ["check", "deploy", "start", "stop"])
        self.assertEqual(config.hookEnvironment, {"DOCKER_HOST": "unix:///run/docker.sock"})
        self.assertEqual(config.timeouts.deploy, 900)
        self.assertEqual(config.timeouts.killGrace, 5)
        self.assertEqual(config.maxClockSkew, 10)
        self.assertEqual(config.maintenanceFile, "/monroe/maintenance/enabled")

    def test_valid(self) -> None:
        """
        A minimal complete file loads, with defaults filled in.
        """
        config = self.load(self.data)
        self.assertEqual(config.controllerURL, "https://ctl.example:8443/v1")  # type: ignore[attr-defined]
        self.assertEqual(config.nodeId, "42")  # type: ignore[attr-defined]
        self.assertEqual(config.timeouts.request, 10)  # type: ignore[attr-defined]

    def test_idFile(self) -> None:
        """
        Without C{node.id}, the id is read from C{node.idfile}.
        """
        idFile = os.path.join(self.base, "nodeid")
        with open(idFile, "w") as f:
            f.write(" 17\n")
        self.data["node"] = {"idfile": idFile}
        self.assertEqual(self.load(self.data).nodeId, "17")  # type: ignore[attr-defined]
        self.data["node"] = {"idfile": idFile + ".missing"}
        self.assertConfigError(self.data, "node.idfile: cannot read")
        self.data["node"] = {}
        self.assertConfigError(self.data, "node.id or node.idfile: required")
        self.data["node"] = {"id": "../etc"}
        self.assertConfigError(self.data, "node.id: '../etc' is not a valid node id")

    def test_controller(self) -> None:
        """
        The controller URL must be https; its CA must be a PEM certificate.
        """
        self.data["controller"] = {"url": "http://ctl.example/v1", "ca": _pki("one").caCertificate}
        self.assertConfigError(self.data, "controller.url: must be an https:// URL")
        self.data["controller"] = {"url": "https://ctl.example/v1"}
        self.assertConfigError(self.data, "controller.ca: required")
        self.data["controller"] = {"url": "https://ctl.example/v1", "ca": _pki("one").clientKey}
        self.assertConfigError(self.data, "controller.ca:")

    def test_tls(self) -> None:
        """
        Missing certificate files and keys that do not match the certificate
        are refused at load time.
        """
        self.data["tls"] = {"certificate": "/nonexistent.pem", "key": _pki("one").clientKey}
        self.assertConfigError(self.data, "tls.certificate: cannot read /nonexistent.pem")
        self.data["tls"] = {"certificate": _pki("one").clientCertificate, "key": _pki("two").clientKey}
        self.assertConfigError(self.data, "does not belong to the certificate")

    def test_hooks(self) -> None:
        """
        Hooks must be absolute paths to executable files; check is optional.
        """
        del self.data["hooks"]["check"]  # type: ignore[attr-defined]
        self.assertNotIn("check", self.load(self.data).hooks)  # type: ignore[attr-defined]
        del self.data["hooks"]["deploy"]  # type: ignore[attr-defined]
        self.assertConfigError(self.data, "hooks.deploy: required")
        self.data["hooks"]["deploy"] = "deploy.sh"  # type: ignore[index]
        self.assertConfigError(self.data, "hooks.deploy: must be an absolute path")
        path = os.path.join(self.base, "plain")
        open(path, "w").close()
        self.data["hooks"]["deploy"] = path  # type: ignore[index]
        self.assertConfigError(self.data, f"hooks.deploy: {path} is not an executable file")
        self.data["hooks"]["restart"] = path  # type: ignore[index]
        self.assertConfigError(self.data, "hooks: unknown key(s): restart")

    def test_numbers(self) -> None:
        """
        Periods, limits and timeouts are checked for type and range.
        """
        self.data["heartbeat"] = {"period": "often"}
        self.assertConfigError(self.data, "heartbeat.period: must be a number, not 'often'")
        self.data["heartbeat"] = {"jitter": 2}
        self.assertConfigError(self.data, "heartbeat.jitter: must be between 0 and 0.5")
        self.data["heartbeat"] = {"limit": 2.5}
        self.assertConfigError(self.data, "heartbeat.limit: must be a whole number")
        self.data["heartbeat"] = {}
        self.data["timeouts"] = {"deploy": -1}
        self.assertConfigError(self.data, "timeouts.deploy: must be at least 0.01")
        self.data["timeouts"] = {"forever": 1}
        self.assertConfigError(self.data, "timeouts: unknown key(s): forever")
        self.data["timeouts"] = {}
        self.data["max_clock_skew"] = 1
        self.assertConfigError(self.data, "max_clock_skew: must be at least 2")

    def test_shape(self) -> None:
        """
        Unknown keys, non-mappings, bad YAML and missing files each get one
        message.
        """
        self.data["heartbeat_period"] = 60
        self.assertConfigError(self.data, "unknown key(s): heartbeat_period")
        self.assertConfigError(["a"], "the file must hold a YAML mapping")
        path = os.path.join(self.base, "marvind.conf")
        with open(path, "w") as f:
            f.write("controller: [unclosed\n")
        with self.assertRaises(ConfigError) as caught:
            loadConfig(path)
        self.assertIn("not valid YAML", str(caught.exception))
        with self.assertRaises(ConfigError) as caught:
            loadConfig(path + ".missing")
        self.assertEqual(str(caught.exception), f"cannot read {path}.missing: No such file or directory")
