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
from am.devtools.demopki import prepareDemoFiles, prepareGeniDemo


def prepareDemo(directory: str) -> tuple[dict[str, Any], DemoSetup]:
    """
    Make (or reuse) the demo's directory: its development CA, certificates
    and static inventory. Returns the demo's configuration defaults and
    what was made; the L{am.ctl.config.loadConfig} C{prepareDemo} hook.
    """
    defaults, pki = prepareDemoFiles(directory)
    return defaults, DemoSetup(directory=directory, pki=pki)


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
    lines.append("")
    return "\n".join(lines)
