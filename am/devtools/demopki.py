# -*- test-case-name: tests.test_ctl_config -*-
"""
The demo's set-up: its directory, static inventory and development PKI,
the PKI made with the development authority of
L{am.devtools.authority}: one CA, the controller's server certificate for
C{localhost}, and client certificates for the demo's admin, user and each
demo node that runs an agent.

For C{marvinctld --demo} and tests only: keys lie unencrypted in one
directory and nothing can be revoked.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import attrs
import yaml
from cryptography.hazmat.primitives import serialization

#: The GENI authority the demo's certificates name.
DEMO_AUTHORITY = "marvin-demo"

#: The demo nodes that run an agent (node 6 is disabled in the inventory).
DEMO_AGENT_NODES = ("1", "2", "3", "4", "5")

#: client role -> GENI user name in its certificate: the admin, the user, and
#: one identity per demo agent (C{node} is node 1, C{nodeN} node N).
DEMO_CLIENTS = {"admin": "admin", "user": "demo", "node": "node1"} | {
    f"node{n}": f"node{n}" for n in DEMO_AGENT_NODES[1:]
}


def nodeClient(nodeid: str) -> str:
    """
    The client name of demo node C{nodeid}'s identity in L{DemoPKI}.
    """
    return "node" if nodeid == DEMO_AGENT_NODES[0] else f"node{nodeid}"


def fingerprint(certificate: Any) -> str:
    """
    The REST face's (and nginx's C{$ssl_client_fingerprint}) name for a
    certificate: SHA-1 of its DER, 40 lowercase hex digits.
    """
    return hashlib.sha1(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


@attrs.frozen
class DemoPKI:
    """
    The demo's certificate files.

    @ivar paths: C{name -> (certificate, key)} for C{ca}, C{server}, and the
        clients C{admin}, C{user}, C{node}.
    @ivar fingerprints: client name -> certificate fingerprint.
    @ivar urns: client name -> GENI URN in its certificate.
    @ivar created: whether this call made them (rather than reusing them).
    """

    directory: str
    paths: dict[str, tuple[str, str]]
    fingerprints: dict[str, str]
    urns: dict[str, str]
    created: bool

    def certificate(self, name: str) -> str:
        return self.paths[name][0]

    def key(self, name: str) -> str:
        return self.paths[name][1]


def _stem(name: str) -> str:
    if name == "ca":
        return "ca"
    if name == "server":
        return "am"
    return f"user-{DEMO_CLIENTS[name]}"


def ensureDemoPKI(directory: str, hostname: str = "localhost") -> DemoPKI:
    """
    Make the demo CA and its certificates in C{directory} on first use and
    reuse them afterwards, so printed curl commands keep working across
    restarts. An incomplete set (a deleted key, say) is made again from
    scratch, with a new CA.
    """
    from am.devtools.authority import loadIdentity, makeAM, makeCA, makeUser

    os.makedirs(directory, mode=0o700, exist_ok=True)
    names = ("ca", "server", *DEMO_CLIENTS)
    paths = {
        n: (os.path.join(directory, f"{_stem(n)}-cert.pem"), os.path.join(directory, f"{_stem(n)}-key.pem"))
        for n in names
    }
    complete = all(os.path.exists(p) for pair in paths.values() for p in pair)
    if complete:
        clients = {n: loadIdentity(directory, _stem(n)) for n in DEMO_CLIENTS}
    else:
        ca = makeCA(directory, DEMO_AUTHORITY)
        makeAM(directory, ca, hostname)
        clients = {n: makeUser(directory, ca, DEMO_CLIENTS[n]) for n in DEMO_CLIENTS}
    return DemoPKI(
        directory=directory,
        paths=paths,
        fingerprints={n: fingerprint(i.certificate) for n, i in clients.items()},
        urns={n: i.urn for n, i in clients.items()},
        created=not complete,
    )


#: The demo's nodes, written to the demo directory as its static inventory.
#: C{files/inventory-demo.yaml} holds the same nodes (a test keeps them equal).
DEMO_NODES = [
    {"id": "1", "hostname": "demo-node-1", "status": "active",
     "tags": {"type": "testing", "country": "se", "model": "apu2d", "site": "karlstad", "project": "demo"}},
    {"id": "2", "hostname": "demo-node-2", "status": "active",
     "tags": {"type": "testing", "country": "se", "model": "apu2d", "site": "karlstad", "project": "demo"}},
    {"id": "3", "hostname": "demo-node-3", "status": "active",
     "tags": {"type": "deployed", "country": "no", "model": "apu2d", "site": "oslo", "project": "demo"}},
    {"id": "4", "hostname": "demo-node-4", "status": "active",
     "tags": {"type": "deployed", "country": "no", "model": "apu1d", "site": "oslo", "project": "demo"}},
    {"id": "5", "hostname": "demo-node-5", "status": "active",
     "tags": {"type": "deployed", "country": "es", "model": "apu2d", "site": "madrid", "project": "demo"}},
    {"id": "6", "hostname": "demo-node-6", "status": "disabled",
     "tags": {"type": "retired", "country": "it", "model": "apu1d", "site": "torino", "project": "demo"}},
]


def writeBrowserBundle(pki: DemoPKI, name: str, password: str) -> str:
    """
    The client C{name}'s certificate and key as a PKCS#12 file (next to its
    PEM files, protected by C{password}) for importing into a browser to open
    the timeline page; made once.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, load_pem_private_key
    from cryptography.hazmat.primitives.serialization.pkcs12 import serialize_key_and_certificates

    path = os.path.join(pki.directory, f"{_stem(name)}.p12")
    if os.path.exists(path):
        return path
    with open(pki.certificate(name), "rb") as f:
        certificate = x509.load_pem_x509_certificate(f.read())
    with open(pki.key(name), "rb") as f:
        key = load_pem_private_key(f.read(), password=None)
    with open(pki.certificate("ca"), "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    bundle = serialize_key_and_certificates(
        DEMO_CLIENTS[name].encode(), key, certificate, [ca], BestAvailableEncryption(password.encode())  # type: ignore[arg-type]
    )
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(bundle)
    return path


def prepareGeniDemo(pkiDirectory: str, directory: str, hostname: str = "localhost", port: int = 8443) -> dict[str, str]:
    """
    Files for trying the GENI face with omni: fresh user and slice credentials
    for the demo user (slice C{demo}, valid a week), a request RSpec, and an
    omni configuration that uses them instead of a clearinghouse.
    """
    from am.devtools.authority import issueSliceCredential, issueUserCredential, loadCA, loadIdentity, makeSlice

    os.makedirs(directory, exist_ok=True)
    ca = loadCA(pkiDirectory)
    user = loadIdentity(pkiDirectory, _stem("user"))
    slice_ = makeSlice(None, ca, "demo", days=30)
    week = 7 * 24 * 3600.0
    paths = {
        "usercred": os.path.join(directory, "user-cred.xml"),
        "slicecred": os.path.join(directory, "slice-demo-cred.xml"),
        "rspec": os.path.join(directory, "request.xml"),
        "omni_config": os.path.join(directory, "omni_config"),
        "slice": slice_.urn,
        "url": f"https://{hostname}:{port}/xmlrpc/am/3.0",
    }
    files = {
        "usercred": issueUserCredential(ca, user, lifetime=week),
        "slicecred": issueSliceCredential(ca, user, slice_, lifetime=week),
        "rspec": DEMO_RSPEC.format(authority=DEMO_AUTHORITY),
        "omni_config": DEMO_OMNI.format(
            authority=DEMO_AUTHORITY, cert=os.path.join(pkiDirectory, f"{_stem('user')}-cert.pem"),
            key=os.path.join(pkiDirectory, f"{_stem('user')}-key.pem"), urn=user.urn, url=paths["url"],
            sshkey=demoSSHKey(directory),
        ),
    }
    for name, text in files.items():
        with open(paths[name], "w") as f:
            f.write(text)
    return paths


def demoSSHKey(directory: str) -> str:
    """
    The demo user's SSH key pair (Ed25519, made once, reused): omni sends the
    public half as C{geni_users} with Provision, and complains in an ERROR
    line when its configuration names no key.

    @return: the path of the public key (C{demo-ssh-key.pub}).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private, public = os.path.join(directory, "demo-ssh-key"), os.path.join(directory, "demo-ssh-key.pub")
    if not (os.path.exists(private) and os.path.exists(public)):
        key = ed25519.Ed25519PrivateKey.generate()
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                      serialization.NoEncryption()))
        with open(public, "wb") as f:
            f.write(key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
                    + b" marvin-demo\n")
    return public


DEMO_RSPEC = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Two demo nodes chosen by the scheduler (type:testing), as soon as possible, for the
     default duration, running the hello-world container. -->
<rspec type="request" xmlns="http://www.geni.net/resources/rspec/3"
       xmlns:marvin="http://marvin.monroe-project.eu/rspec/ext/1">
  <node client_id="probe" exclusive="true">
    <marvin:filter nodetypes="type:testing" count="2"/>
    <sliver_type name="container">
      <disk_image url="docker.io/library/hello-world"/>
    </sliver_type>
  </node>
</rspec>
"""

DEMO_OMNI = """# omni configuration for the Marvin demo AM.  There is no clearinghouse: pass the
# saved credentials with --usercredfile and --slicecredfile (see marvinctld's output).
[omni]
default_cf = marvin
users = demo

[marvin]
type = gcf
authority = {authority}
ch = https://localhost:0/unused-clearinghouse
cert = {cert}
key = {key}

[demo]
urn = {urn}
keys = {sshkey}

[aggregate_nicknames]
marvin = urn:publicid:IDN+{authority}+authority+am,{url}
"""


def prepareDemoFiles(directory: str) -> tuple[dict[str, Any], DemoPKI]:
    """
    Make the demo directory on first use: a development CA with server,
    admin, user and node certificates, and the static inventory; reuse them
    afterwards. Returns the demo defaults (a configuration document) and the
    PKI (L{am.ctl.demo} wraps them for the controller's configuration).
    """
    os.makedirs(directory, exist_ok=True)
    pki = ensureDemoPKI(os.path.join(directory, "pki"))
    inventory = os.path.join(directory, "inventory.yaml")
    if not os.path.exists(inventory):
        with open(inventory, "w") as f:
            f.write("# The demo's static inventory: edit it and marvinctld picks it up within a minute.\n")
            yaml.safe_dump({"nodes": DEMO_NODES}, f, sort_keys=False)
    writeBrowserBundle(pki, "user", "demo")
    defaults = {
        "database": os.path.join(directory, "marvin.db"),
        "listen": {
            "tls": {
                "address": "127.0.0.1",
                "port": 8443,
                "certificate": pki.certificate("server"),
                "key": pki.key("server"),
                "client_ca": [pki.certificate("ca")],
            },
            "http": {"address": "127.0.0.1", "port": 9098},
        },
        "trusted_proxies": ["127.0.0.1/32", "::1/128"],
        "inventory": {"file": inventory, "period": 60, "retry": 10},
        # The demo's node agents heartbeat (am.ctl.demoagents), so heartbeats stay
        # required; no maintenance windows to surprise a first experiment.
        "scheduling": {"maintenance_windows": []},
        "geni": {"authority": DEMO_AUTHORITY, "trust_roots": [pki.certificate("ca")],
                 "default_image": "docker.io/library/hello-world"},
        "log": {"file": "-", "level": "info"},
    }
    return defaults, pki
