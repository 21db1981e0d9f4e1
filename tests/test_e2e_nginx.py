"""
End to end behind a real nginx: files/nginx/marvin.conf (its paths and
ports swapped for a temporary directory and free loopback ports) in front
of a real marvinctld on its plain listener, with JSON logs.

Through nginx: REST as a user (who am I, a booking) and as a node (a
heartbeat), and a GENI lifecycle with geni-lib; the controller's own
/metrics then counts them (parsed with prometheus_client's parser) and its
log has one JSON access line per REST request. Straight to the controller
from a loopback address that is not the configured proxy, the very headers
nginx sends are ignored.

nginx is the Debian package (scripts/test.sh installs it as root); the test
runs its own nginx process with its own prefix, never the system service.
Waits are on conditions with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import urllib.parse
import xmlrpc.client

import pytest
import yaml
from geni.minigcf import amapi2, amapi3
from prometheus_client.parser import text_string_to_metric_families

from am.devtools.demopki import prepareGeniDemo
from tests.test_e2e_ctl import Process
from tests.waiting import waitFor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V3 = {"geni_rspec_version": {"type": "GENI", "version": "3"}}
# Not the proxy: trusted_proxies is 127.0.0.1/32, and this is loopback too.
STRANGER = "127.0.0.3"


def nginxBinary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    assert found, "nginx is missing: run scripts/test.sh as root on Debian (it installs the nginx package)"
    return found


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def siteConfig(pki, upstream: int, port: int) -> str:
    """
    The shipped site with this test's certificates and ports; every swap
    must find its text, so a changed site file fails here rather than
    being tested half.
    """
    with open(os.path.join(ROOT, "files", "nginx", "marvin.conf")) as f:
        text = f.read()
    for old, new in (
        ("server 127.0.0.1:9098;", f"server 127.0.0.1:{upstream};"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
        ("listen [::]:443 ssl;\n", ""),
        ("/etc/marvin/server-cert.pem", pki.certificate("server")),
        ("/etc/marvin/server-key.pem", pki.key("server")),
        ("/etc/marvin/client-roots.pem", pki.certificate("ca")),
    ):
        assert old in text, old
        text = text.replace(old, new)
    return text


class Nginx:
    """
    An nginx master process in the foreground with its own prefix.
    """

    def __init__(self, directory: str, site: str, port: int) -> None:
        for sub in ("logs", "temp"):
            os.makedirs(os.path.join(directory, sub), exist_ok=True)
        with open(os.path.join(directory, "site.conf"), "w") as f:
            f.write(site)
        temp = os.path.join(directory, "temp")
        main = f"""
daemon off;
worker_processes 1;
{"user root;" if os.geteuid() == 0 else ""}
pid {directory}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {directory}/site.conf;
}}
"""
        path = os.path.join(directory, "nginx.conf")
        with open(path, "w") as f:
            f.write(main)
        binary = nginxBinary()
        check = subprocess.run([binary, "-t", "-p", directory, "-c", path, "-e", "stderr"],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([binary, "-p", directory, "-c", path, "-e", "stderr"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

        def listening() -> bool:
            assert self.proc.poll() is None, self.proc.stderr.read()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        waitFor(listening, 30.0, "nginx listening", interval=0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    nginxBinary()
    tmp = tmp_path_factory.mktemp("nginx-e2e")
    config = {
        "demo": True, "demo_dir": str(tmp / "demo"),
        # plain listener only: nginx terminates TLS
        "listen": {"tls": None, "http": {"address": "127.0.0.1", "port": 0}},
        "trusted_proxies": ["127.0.0.1/32"],
        "public_url": "https://localhost/",
        "log": {"format": "json", "level": "info"},
        # The demo's agents reach the controller over TLS, which nginx holds
        # here; the bookings of this test need no node to have heartbeated.
        "scheduling": {"require_heartbeat": False},
    }
    (tmp / "ctl.yaml").write_text(yaml.safe_dump(config))
    controller = Process(["--config", str(tmp / "ctl.yaml")])
    nginx = None
    try:
        upstream = controller.ports(1)["http"]
        from am.devtools.demopki import ensureDemoPKI

        pki = ensureDemoPKI(str(tmp / "demo" / "pki"))
        port = freePort()
        nginx = Nginx(str(tmp / "nginx"), siteConfig(pki, upstream, port), port)
        geni = prepareGeniDemo(pki.directory, str(tmp / "geni"), port=port)
        yield {"controller": controller, "upstream": upstream, "port": port, "pki": pki, "geni": geni}
        assert controller.stop() == 0
    finally:
        if nginx is not None:
            nginx.stop()
        controller.kill()


def viaNginx(d, method, path, who=None, form=None):
    context = ssl.create_default_context(cafile=d["pki"].certificate("ca"))
    if who is not None:
        context.load_cert_chain(d["pki"].certificate(who), d["pki"].key(who))
    connection = http.client.HTTPSConnection("localhost", d["port"], context=context, timeout=30)
    headers, body = {}, None
    if form is not None:
        body = urllib.parse.urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def direct(d, method, path, headers, body=None, source=STRANGER):
    connection = http.client.HTTPConnection("127.0.0.1", d["upstream"], timeout=30, source_address=(source, 0))
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def test_restAsUserAndNode(deployment):
    """
    A user's certificate at nginx names the user at the controller; the user
    books; the node heartbeats; /health passes, /metrics stays closed.
    """
    d = deployment
    status, body = viaNginx(d, "GET", "/v1/backend/auth", who="user")
    assert status == 200, body
    assert json.loads(body)["user"]["name"] == "Marvin demo user"
    status, body = viaNginx(d, "GET", "/v1/backend/auth")  # no certificate: anonymous, in JSON
    assert (status, json.loads(body)["user"]) == (401, None)
    status, body = viaNginx(d, "POST", "/v1/experiments", who="user", form={
        "name": "via-nginx", "script": "docker.io/library/hello-world", "nodecount": 1,
        "nodetypes": "type:testing", "start": 0, "duration": 300,
    })
    assert status == 201, body
    status, body = viaNginx(d, "PUT", "/v1/resources/1", who="node", form={"maintenance": 0})
    assert status == 200, body
    assert "tasks" in json.loads(body)
    status, body = viaNginx(d, "GET", "/health")
    assert (status, json.loads(body)) == (200, {"status": "alive"})
    assert viaNginx(d, "GET", "/metrics", who="user")[0] == 404


def test_geniLifecycle(deployment):
    """
    geni-lib through nginx: the certificate nginx passes is verified against
    the GENI roots and names the caller through the whole lifecycle.
    """
    d, g = deployment, deployment["geni"]
    pki = d["pki"]
    where = (g["url"], pki.certificate("ca"), pki.certificate("user"), pki.key("user"))
    assert g["url"] == f"https://localhost:{d['port']}/xmlrpc/am/3.0"

    class Credential:
        def __init__(self, path):
            self.path, self.type, self.version = path, "geni_sfa", "3"

    with open(g["usercred"]) as f:
        usercred = f.read()
    with open(g["rspec"]) as f:
        rspec = f.read()
    slicecred = [Credential(g["slicecred"])]
    version = amapi2.getversion(*where)
    assert version["code"]["geni_code"] == 0 and version["value"]["geni_api"] == 3
    ad = amapi2.listresources(*where, [usercred])
    assert ad["code"]["geni_code"] == 0, ad["output"]
    allocated = amapi3.allocate(*where, slicecred, g["slice"], rspec)
    assert allocated["code"]["geni_code"] == 0, allocated["output"]
    provisioned = amapi3.provision(*where, slicecred, g["slice"], V3)
    assert provisioned["code"]["geni_code"] == 0, provisioned["output"]
    started = amapi3.poa(*where, slicecred, g["slice"], "geni_start")
    assert started["code"]["geni_code"] == 0, started["output"]
    deleted = amapi3.delete(*where, slicecred, g["slice"])
    assert deleted["code"]["geni_code"] == 0, deleted["output"]


def test_headersFromOthersIgnored(deployment):
    """
    The headers nginx sends, sent straight to the controller from a loopback
    address that is not the proxy, identify nobody (REST 401, GENI FORBIDDEN).
    """
    d, pki = deployment, deployment["pki"]
    with open(pki.certificate("user")) as f:
        escaped = urllib.parse.quote(f.read(), safe="")
    headers = {"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": pki.fingerprints["user"], "SSL_CLIENT_CERT": escaped}
    status, body = direct(d, "GET", "/v1/backend/auth", headers)
    assert (status, json.loads(body)["user"]) == (401, None)
    call = xmlrpc.client.dumps(({},), "GetVersion").encode()
    status, body = direct(d, "POST", "/xmlrpc/am/3.0", dict(headers, **{"Content-Type": "text/xml"}), call)
    (answer,), _ = xmlrpc.client.loads(body)
    assert (status, answer["code"]["geni_code"]) == (200, 3)
    # from the proxy's address the same headers do identify the user
    status, body = direct(d, "GET", "/v1/backend/auth", headers, source="127.0.0.1")
    assert (status, json.loads(body)["user"]["name"]) == (200, "Marvin demo user")


def test_metricsAndJSONLogs(deployment):
    """
    After the calls above: the controller's /metrics (scraped from loopback,
    the configured proxy) counts them, and every REST request left one JSON
    access line with its route, status, user and request id.
    """
    d = deployment
    viaNginx(d, "GET", "/v1/resources", who="user")
    status, body = direct(d, "GET", "/metrics", {}, source="127.0.0.1")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    rest = ("marvin_http_requests_total",
            (("face", "rest"), ("method", "GET"), ("route", "resources"), ("status", "200")))
    assert samples[rest] >= 1
    assert samples[("marvin_geni_calls_total", (("geni_code", "0"), ("method", "Allocate")))] >= 1
    assert samples[("marvin_bookings_total", (("face", "rest"), ("outcome", "made")))] >= 1
    assert samples[("marvin_bookings_total", (("face", "geni"), ("outcome", "made")))] >= 1
    assert samples[("marvin_heartbeats_total", ())] >= 1
    assert samples[("marvin_cache_hits_total", (("cache", "credential"),))] >= 1
    controller = d["controller"]
    match = controller.waitFor(r'"route": "resources"')
    record = json.loads(match.string)
    assert record["level"] == "info" and record["logger"] == "rest_compat.resource.RESTApplication"
    assert record["time"].endswith("Z") and record["status"] == 200
    assert record["user"].startswith("Marvin demo user#") and len(record["requestId"]) == 12
    assert record["message"].startswith("GET /v1/resources Marvin demo user#")
    logged = [line for line in controller.output if line.startswith("{")]
    assert len(logged) > 10
    for line in logged:
        json.loads(line)  # every log line is one JSON object (the demo's own instructions are plain text)
