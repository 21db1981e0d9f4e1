"""
Interoperability with a GENI client we did not write: geni-lib's MiniGCF
(Python 3, requests-based; as used by CloudLab's tools) drives a real
marvinctld process over TLS through the whole AM API v3 lifecycle.
"""

from __future__ import annotations

import os

import pytest
import yaml
from geni.minigcf import amapi2, amapi3

from am.devtools.demopki import DEMO_NODES
from am.devtools import authority
from tests.test_e2e_ctl import Process

V3 = {"geni_rspec_version": {"type": "GENI", "version": "3"}}
REQUEST = """<?xml version="1.0"?>
<rspec type="request" xmlns="http://www.geni.net/resources/rspec/3">
  <node client_id="probe" component_id="urn:publicid:IDN+interop+node+1"
        component_manager_id="urn:publicid:IDN+interop+authority+am" exclusive="true">
    <sliver_type name="container"><disk_image url="docker.io/library/hello-world"/></sliver_type>
  </node>
</rspec>
"""


class Credential:
    """
    What MiniGCF reads a credential from: a file path, a type and a version.
    """

    def __init__(self, path: str) -> None:
        self.path, self.type, self.version = path, "geni_sfa", "3"


@pytest.fixture
def controller(tmp_path):
    ca = authority.makeCA(str(tmp_path), "interop")
    authority.makeAM(str(tmp_path), ca, "localhost")
    alice = authority.makeUser(str(tmp_path), ca, "alice")
    exp = authority.makeSlice(None, ca, "exp1")
    (tmp_path / "user.xml").write_text(authority.issueUserCredential(ca, alice))
    (tmp_path / "slice.xml").write_text(authority.issueSliceCredential(ca, alice, exp))
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump({"nodes": DEMO_NODES}))
    config = {
        "database": str(tmp_path / "marvin.db"),
        "listen": {"tls": {"address": "127.0.0.1", "port": 0, "certificate": str(tmp_path / "am-cert.pem"),
                           "key": str(tmp_path / "am-key.pem"), "client_ca": [str(tmp_path / "ca-cert.pem")]}},
        "inventory": {"file": str(tmp_path / "inventory.yaml")},
        "scheduling": {"require_heartbeat": False, "maintenance_windows": []},
        "geni": {"authority": "interop", "trust_roots": [str(tmp_path / "ca-cert.pem")]},
    }
    (tmp_path / "ctl.yaml").write_text(yaml.safe_dump(config))
    process = Process(["--config", str(tmp_path / "ctl.yaml")])
    try:
        port = process.ports(1)["https"]
        yield {
            "url": f"https://localhost:{port}/xmlrpc/am/3.0",
            "ca": str(tmp_path / "ca-cert.pem"),
            "cert": str(tmp_path / "user-alice-cert.pem"),
            "key": str(tmp_path / "user-alice-key.pem"),
            "user": (tmp_path / "user.xml").read_text(),
            "slice": [Credential(str(tmp_path / "slice.xml"))],
            "urn": exp.urn,
        }
        assert process.stop() == 0
    finally:
        process.kill()


def test_lifecycle(controller) -> None:
    """
    GetVersion, ListResources, Allocate, Provision, PerformOperationalAction and
    Delete as geni-lib sends them (credentials as base64 bytes, legacy string
    credentials for ListResources) all succeed, with the answers it parses.
    """
    c = controller
    where = (c["url"], c["ca"], c["cert"], c["key"])
    version = amapi2.getversion(*where)
    assert version["code"]["geni_code"] == 0 and version["value"]["geni_api"] == 3
    ad = amapi2.listresources(*where, [c["user"]])
    assert ad["code"]["geni_code"] == 0
    assert "urn:publicid:IDN+interop+node+1" in ad["value"]
    allocated = amapi3.allocate(*where, c["slice"], c["urn"], REQUEST)
    assert allocated["code"]["geni_code"] == 0, allocated["output"]
    assert [s["geni_allocation_status"] for s in allocated["value"]["geni_slivers"]] == ["geni_allocated"]
    assert 'client_id="probe"' in allocated["value"]["geni_rspec"]
    provisioned = amapi3.provision(*where, c["slice"], c["urn"], V3)
    assert provisioned["code"]["geni_code"] == 0, provisioned["output"]
    started = amapi3.poa(*where, c["slice"], c["urn"], "geni_start")
    assert started["code"]["geni_code"] == 0
    assert started["value"][0]["geni_allocation_status"] == "geni_provisioned"
    again = amapi3.allocate(*where, c["slice"], c["urn"], REQUEST)
    assert again["code"]["geni_code"] == 17  # single allocation: the slice is live
    deleted = amapi3.delete(*where, c["slice"], c["urn"])
    assert deleted["code"]["geni_code"] == 0
    assert [s["geni_allocation_status"] for s in deleted["value"]] == ["geni_unallocated"]


def test_refusals(controller) -> None:
    """
    Refusals reach geni-lib as GENI structs, never as HTTP errors or Faults.
    """
    c = controller
    where = (c["url"], c["ca"], c["cert"], c["key"])
    assert amapi2.listresources(*where, ["<not a credential"])["code"]["geni_code"] == 1
    broken = amapi3.allocate(*where, c["slice"], c["urn"], "<rspec")
    assert broken["code"]["geni_code"] == 1
    assert amapi3.poa(*where, c["slice"], c["urn"], "geni_reboot")["code"]["geni_code"] == 13
