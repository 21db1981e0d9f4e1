# -*- test-case-name: tests.test_e2e_ctl -*-
"""
C{marvinctld --demo}: the demo's set-up and the text it prints.

The one production module that uses L{am.devtools} (the development CA and
demo PKI): an exception declared in the layer contract (C{setup.cfg},
C{docs/architecture.md}). L{am.ctl.config} only receives what
L{prepareDemo} made, so configuration and PKI never import each other.
"""

from __future__ import annotations

import os
from typing import Any

from am.ctl.config import DemoSetup
from am.ctl.demoagents import DemoAgents
from am.devtools.demopki import DEMO_AGENT_NODES, nodeClient, prepareDemoFiles, prepareGeniDemo


def prepareDemo(directory: str) -> tuple[dict[str, Any], DemoSetup]:
    """
    Make (or reuse) the demo's directory: its development CA, certificates
    and static inventory. Returns the demo's configuration defaults and
    what was made; the L{am.ctl.config.loadConfig} C{prepareDemo} hook.
    """
    defaults, pki = prepareDemoFiles(directory)
    return defaults, DemoSetup(directory=directory, pki=pki)


def addDemoAgents(controller: Any, runtime: Any = None) -> DemoAgents:
    """
    Give a demo controller its node agents (L{DemoAgents}), one per active
    demo node, each with its own certificate from the demo PKI.
    """
    demo = controller.config.demo
    pki = demo.pki
    identities = {n: (pki.certificate(nodeClient(n)), pki.key(nodeClient(n))) for n in DEMO_AGENT_NODES}
    agents = DemoAgents(
        controller, DEMO_AGENT_NODES, identities, pki.certificate("ca"),
        os.path.join(demo.directory, "agents"), runtime=runtime,
    )
    controller.addService(agents)
    return agents


def demoInstructions(controller: Any) -> str:
    """
    What to paste into a shell to talk to the demo, with the real paths and ports.
    """
    config = controller.config
    assert config.demo is not None
    pki = config.demo.pki
    lines = [
        "",
        "Marvin demo controller is running.",
        f"  directory:  {config.demo.directory}",
        f"  database:   {config.database}",
        f"  inventory:  {config.inventory.file}",
    ]
    tlsPort = controller.portFor("https")
    if tlsPort is not None:
        base = f"https://localhost:{tlsPort}"

        def curl(who: str, rest: str) -> str:
            return (
                f"  curl --cacert {pki.certificate('ca')} --cert {pki.certificate(who)} "
                f"--key {pki.key(who)} {rest}"
            )

        lines += [
            f"  TLS (client certificate required): {base}/",
            "",
            "Who am I (as the demo user):",
            curl("user", f"{base}/v1/backend/auth"),
            "Nodes:",
            curl("user", f"{base}/v1/resources"),
            "Find a free slot for 2 nodes for 5 minutes:",
            curl("user", f"'{base}/v1/schedules/find?nodecount=2&duration=300'"),
            "Run an experiment on 2 nodes as soon as possible for 5 minutes:",
            curl(
                "user",
                "-H 'Content-Type: application/json' -d '{\"name\": \"hello\", \"script\": "
                "\"docker.io/library/hello-world\", \"nodecount\": 2, \"nodetypes\": \"type:testing\", "
                f"\"start\": 0, \"duration\": 300}}' {base}/v1/experiments",
            ),
            "",
            "Run a task now (the demo user; a node of type:testing, as soon as possible, for 2 minutes;",
            "its program works 20 s), then watch it go defined -> deployed -> started -> finished:",
            curl(
                "user",
                "-H 'Content-Type: application/json' -d '{\"name\": \"first-task\", \"script\": "
                "\"docker.io/library/hello-world\", \"nodecount\": 1, \"nodetypes\": \"type:testing\", "
                f"\"start\": 0, \"duration\": 120, \"options\": {{\"seconds\": 20}}}}' {base}/v1/experiments",
            ),
            "Watch it over REST (statuses of your schedules; repeat it, or put 'watch -n 2' in front):",
            curl("user", f"'{base}/v1/schedules.json?mine=1'"),
            f"Watch it on the timeline: open {base}/ui/ in a browser that holds the demo user's certificate",
            f"  (import {os.path.join(pki.directory, 'user-demo.p12')}, password 'demo').",
            "Your schedules as a calendar to subscribe to (iCalendar):",
            curl("user", f"'{base}/v1/schedules.ics?mine=1'"),
            "",
            "Users (as the demo admin):",
            curl("admin", f"{base}/v1/users"),
            "Heartbeat (as node 1):",
            curl("node", f"-X PUT -d maintenance=0 {base}/v1/resources/1"),
        ]
    if tlsPort is not None and config.geni is not None:
        geni = prepareGeniDemo(pki.directory, os.path.join(config.demo.directory, "geni"), port=tlsPort)
        omni = f"omni -c {geni['omni_config']} -a marvin -V3"
        lines += [
            "",
            f"GENI AM API v3 (jFed, omni): {geni['url']}",
            "GetVersion with curl:",
            curl("user", "-H 'Content-Type: text/xml' -d '<?xml version=\"1.0\"?><methodCall>"
                 f"<methodName>GetVersion</methodName><params/></methodCall>' {geni['url']}"),
            f"omni (slice {geni['slice']}; credentials made for the demo user, valid a week):",
            f"  {omni} --usercredfile {geni['usercred']} getversion",
            f"  {omni} --usercredfile {geni['usercred']} listresources",
            f"  {omni} --slicecredfile {geni['slicecred']} allocate demo {geni['rspec']}",
            f"  {omni} --slicecredfile {geni['slicecred']} provision demo",
            f"  {omni} --slicecredfile {geni['slicecred']} status demo",
            f"  {omni} --slicecredfile {geni['slicecred']} delete demo",
        ]
    httpPort = controller.portFor("http")
    if httpPort is not None:
        host = config.http.address if config.http is not None else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        lines += [
            "",
            f"Plain HTTP for a TLS proxy on loopback: http://{host}:{httpPort}/ -- the proxy",
            f"verifies the client certificate and passes {config.verifiedHeader} and {config.fingerprintHeader};",
            "what nginx would send for the demo user:",
            f"  curl -H '{config.verifiedHeader}: SUCCESS' -H '{config.fingerprintHeader}: "
            f"{pki.fingerprints['user']}' http://{host}:{httpPort}/v1/backend/auth",
        ]
    agents = controller.getServiceNamed("demo-agents") if "demo-agents" in controller.namedServices else None
    if agents is not None and agents.directories:
        lines += [
            "",
            f"Node agents (marvind, {agents.runtime} runtime) run nodes {', '.join(sorted(agents.directories))};",
            f"  their configuration, state and logs: {agents.directory}/node<id>/ (hook logs in state/logs/)",
        ]
    lines.append("")
    return "\n".join(lines)
