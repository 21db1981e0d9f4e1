# -*- test-case-name: tests.test_node_agent -*-
"""
What the agent observes about its own node: the maintenance flag, the
interface list it reports, and how far its clock is from the controller's.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.logger import Logger

_log = Logger()


@attrs.define
class NodeFacts:
    """
    Reads the node's maintenance flag and interface list afresh at every
    heartbeat; files written by other node tools, so a missing or broken file
    is not an error of the agent.

    @ivar maintenanceFile: holds C{1} in maintenance; none or missing: not.
    @ivar interfacesFile: a JSON list sent as is; none or unusable: C{[]}.
    """

    maintenanceFile: str | None
    interfacesFile: str | None
    _interfacesProblem: str | None = None

    def maintenance(self) -> bool:
        """
        Whether the node is in maintenance now.
        """
        if not self.maintenanceFile:
            return False
        try:
            with open(self.maintenanceFile, encoding="utf-8", errors="replace") as f:
                return f.read().strip() == "1"
        except OSError:
            return False

    def interfaces(self) -> list[Any]:
        """
        The interface list; a problem with the file is logged once, not at
        every heartbeat.
        """
        path = self.interfacesFile
        if not path:
            return []
        try:
            with open(path, encoding="utf-8") as f:
                interfaces = json.load(f)
            if not isinstance(interfaces, list):
                raise ValueError("not a JSON list")
        except (OSError, ValueError) as e:
            problem = str(e)
            if problem != self._interfacesProblem:
                _log.warn(
                    "Cannot use {path} ({problem}); reporting no interfaces",
                    path=path, problem=problem,
                )
            self._interfacesProblem = problem
            return []
        self._interfacesProblem = None
        return interfaces


@attrs.define
class ClockSkewWatch:
    """
    Compares the controller's clock (the C{Date} of its answers) with ours:
    when they disagree, tasks start and stop at the wrong time. A warning is
    logged when the skew first exceeds the bound, a notice when it is back
    within it. C{Date} has a resolution of one second, hence a bound of at
    least two.

    @ivar skew: the controller's clock minus ours, in seconds, last seen.
    """

    bound: float
    skew: float | None = None
    _exceeded: bool = False

    def observe(self, controllerDate: float | None, now: float) -> None:
        """
        Take one answer's C{Date} (unix seconds), received at C{now}.
        """
        if controllerDate is None:
            return
        self.skew = skew = controllerDate - now
        if abs(skew) > self.bound and not self._exceeded:
            self._exceeded = True
            _log.warn(
                "Clock skew: the controller's clock is {skew:+.0f} s from ours (bound {bound:g} "
                "s); tasks will start and stop at the wrong time: check NTP",
                skew=skew, bound=self.bound, clockSkew=skew,
            )
        elif abs(skew) <= self.bound and self._exceeded:
            self._exceeded = False
            _log.info(
                "Clock skew back within {bound:g} s ({skew:+.0f} s)", skew=skew, bound=self.bound
            )
