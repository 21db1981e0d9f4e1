"""
marvinctld's configuration: defaults, one clear message per mistake, the
example file, and the demo set-up made once and reused.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile

import pytest
import yaml

from am.ctl import service as ctl
from am.ctl.config import ConfigError, loadConfig, parseConfig
from am.ctl.demo import prepareDemo
from am.devtools.demopki import DEMO_NODES, ensureDemoPKI
from am.ctl.inventory import loadStaticInventory

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLE = os.path.join(ROOT, "files", "etc", "marvinctld.conf")


@pytest.fixture(scope="module")
def pki():
    """
    One demo PKI for the whole module (RSA key generation is the slow part).
    """
    directory = tempfile.mkdtemp(prefix="marvin-pki-")
    yield ensureDemoPKI(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def good(pki, tmp_path):
    """
    A complete, valid configuration document using the module's PKI.
    """
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({"nodes": DEMO_NODES[:2]}))
    return {
        "database": str(tmp_path / "marvin.db"),
        "listen": {
            "tls": {
                "address": "127.0.0.1",
                "port": 8443,
                "certificate": pki.certificate("server"),
                "key": pki.key("server"),
                "client_ca": [pki.certificate("ca")],
            },
            "http": {"port": 9098},
        },
        "admins": [{"name": "Operator", "certificate": pki.certificate("admin")}],
        "inventory": {"file": str(inventory)},
    }


def _error(document, base=".") -> str:
    with pytest.raises(ConfigError) as info:
        parseConfig(document, base)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults(good, pki, tmp_path):
    config = parseConfig({"database": "m.db", "listen": {"http": {}}}, str(tmp_path))
    assert config.database == str(tmp_path / "m.db")
    assert config.tls is None
    assert (config.http.address, config.http.port) == ("127.0.0.1", 9098)
    assert config.trustedProxies == ("127.0.0.1/32", "::1/128")
    assert (config.verifiedHeader, config.fingerprintHeader) == ("VERIFIED", "SSL_FINGERPRINT")
    assert config.bootstrap == ()
    assert config.inventory.file is None and config.inventory.api is None
    assert (config.inventory.period, config.inventory.retry) == (3600, 60)
    assert config.expiryPeriod == 60
    assert config.policy.padding == 120 and config.policy.requireHeartbeat
    assert config.corsOrigins is None
    assert (config.log.file, config.log.level, config.log.format) == ("-", "info", "text")
    assert config.publicURL is None and config.demo is None

    full = parseConfig(good)
    assert full.tls.clientCA == (pki.certificate("ca"),)
    assert full.publicURL == "https://localhost:8443/"
    assert [(u.name, u.role, u.fingerprint) for u in full.bootstrap] == [
        ("Operator", "admin", pki.fingerprints["admin"])
    ]


def test_fingerprintsNormalised(good):
    good["admins"] = [{"name": "A", "fingerprint": "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01"}]
    assert parseConfig(good).bootstrap[0].fingerprint == "abcdef0123456789abcdef0123456789abcdef01"


def test_relativePathsFromTheFile(good, tmp_path):
    good["database"] = "data/marvin.db"
    (tmp_path / "data").mkdir()
    path = tmp_path / "marvinctld.conf"
    path.write_text(yaml.safe_dump(good))
    assert loadConfig(str(path)).database == str(tmp_path / "data" / "marvin.db")


def _set(document, dotted, value):
    target = document
    keys = dotted.split(".")
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    if value is _DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value


_DELETE = object()

ERRORS = [
    ("bogus", 1, "unknown key(s): bogus"),
    ("database", _DELETE, "database: required"),
    ("database", "/no/such/dir/m.db", "database: the directory of /no/such/dir/m.db does not exist"),
    ("listen", {}, "listen: configure listen.tls, listen.http or both"),
    ("listen", [1], "listen: must be a mapping of keys"),
    ("listen.udp", {}, "listen: unknown key(s): udp"),
    ("listen.tls.port", 70000, "listen.tls.port: must be a port number 0-65535, not 70000"),
    ("listen.tls.port", "443", "listen.tls.port: must be a port number"),
    ("listen.tls.address", "localhost", "listen.tls.address: must be an IP address, not 'localhost'"),
    ("listen.tls.client_ca", [], "listen.tls.client_ca: required"),
    ("listen.tls.certificate", "/no/cert.pem", "listen.tls.certificate: cannot read /no/cert.pem: No such file"),
    ("listen.tls.key", _DELETE, "listen.tls.key: required"),
    ("listen.http.address", "::g", "listen.http.address: must be an IP address"),
    ("trusted_proxies", ["10.0.0.0/33"], "trusted_proxies: not an address or network: '10.0.0.0/33'"),
    ("trusted_proxies", "nope", "trusted_proxies: not an address or network: 'nope'"),
    ("headers.fingerprint", ["x"], "headers.fingerprint: must be a string"),
    ("admins", {"name": "x"}, "admins: must be a list"),
    ("admins", [{"name": "x"}], "admins[0]: give exactly one of fingerprint or certificate"),
    ("admins", [{"fingerprint": "a" * 40}], "admins[0].name: required"),
    ("admins", [{"name": "x", "fingerprint": "abc"}], "admins[0].fingerprint: must be the SHA-1 fingerprint"),
    ("admins", [{"name": "x", "fingerprint": "a" * 40, "role": "user"}], "admins[0]: unknown key(s): role"),
    ("inventory.period", 0, "inventory.period: must be at least 1, not 0"),
    ("inventory.period", "hourly", "inventory.period: must be a number of seconds"),
    ("inventory.file", "/no/inventory.yaml", "inventory.file: /no/inventory.yaml: No such file or directory"),
    ("inventory.api", {}, "inventory.api.url: required"),
    ("inventory.api", {"url": "ftp://x/"}, "inventory.api.url: must be an http:// or https:// URL"),
    ("inventory.api", {"url": "https://x/", "token": "a", "token_file": "b"}, "inventory.api: give token or token_file, not both"),
    ("inventory.api", {"url": "https://x/", "token_header": "X Y"}, "inventory.api.token_header: not a valid header name"),
    ("inventory.api", {"url": "https://x/", "fields": {"nodeid": "a"}}, "inventory.api.fields: unknown key(s): nodeid"),
    ("inventory.api", {"url": "https://x/", "fields": {"status": {"map": {}}}}, "inventory.api.fields.status: a mapping needs 'field'"),
    ("inventory.api", {"url": "https://x/", "fields": {"tags": {"a": {"field": "x", "pick": "middle"}}}}, "inventory.api.fields.tags.a.pick: must be 'first' or 'last'"),
    ("inventory.api", {"url": "https://x/", "fields": {"tags": {"a": {"template": "{}"}}}}, "inventory.api.fields.tags.a.template: name each field"),
    ("inventory.api", {"url": "https://x/", "max_bytes": 10}, "inventory.api.max_bytes: must be a number of bytes"),
    ("housekeeping.expiry_period", -1, "housekeeping.expiry_period: must be at least 1"),
    ("housekeeping.sweep_period", 0, "housekeeping.sweep_period: must be at least 1"),
    ("scheduling.padding", -5, "scheduling.padding must be a non-negative integer"),
    ("scheduling.paddding", 5, "scheduling: unknown key 'paddding'"),
    ("scheduling.maintenance_windows", [{"start": "25:00", "end": "26:00"}], "scheduling.maintenance_windows must be a list"),
    ("cors.origins", ["ui.example.org"], "cors.origins: 'ui.example.org' is not an origin"),
    ("log.level", "loud", "log.level: must be one of debug, info, warn, error, critical, not 'loud'"),
    ("log.format", "xml", "log.format: must be text or json"),
    ("log.file", "/no/such/dir/x.log", "log.file: the directory of /no/such/dir/x.log does not exist"),
    ("public_url", "marvin.example.org", "public_url: must be an https:// URL"),
]


@pytest.mark.parametrize("key, value, expected", ERRORS, ids=[e[0] + ":" + e[2][:30] for e in ERRORS])
def test_oneClearMessage(good, key, value, expected):
    document = copy.deepcopy(good)
    _set(document, key, value)
    assert expected in _error(document)


def test_keyOfAnotherCertificate(good, pki):
    good["listen"]["tls"]["key"] = pki.key("user")
    assert _error(good) == (
        f"listen.tls.key: {pki.key('user')} does not belong to the certificate {pki.certificate('server')}"
    )


def test_notPEM(good, pki, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    for key, expected in [
        ("certificate", f"listen.tls.certificate: {junk} holds no PEM certificate"),
        ("key", f"listen.tls.key: {junk} holds no unencrypted PEM private key"),
        ("client_ca", f"listen.tls.client_ca: {junk} holds no PEM certificate"),
    ]:
        document = copy.deepcopy(good)
        document["listen"]["tls"][key] = [str(junk)] if key == "client_ca" else str(junk)
        assert _error(document) == expected


def test_badStaticInventory(good, tmp_path):
    path = tmp_path / "bad.yaml"
    for text, expected in [
        ("nodes: [{hostname: x}]", "node #1: record without a usable id"),
        ("nodes: [{id: 1, status: broken}]", "node #1: node 1: status 'broken' is not one of"),
        ("nodes: [{id: 1}, {id: 1}]", "node #2: node 1 is listed twice"),
        ("nodes: [{id: 1, colour: red}]", "node #1: unknown key(s): colour"),
        ("nodes: [{id: 1, tags: [a]}]", "node #1: tags must map tag names to plain values"),
        ("just text", "must hold a list of nodes"),
        ("nodes: [", "not valid YAML"),
    ]:
        path.write_text(text)
        good["inventory"]["file"] = str(path)
        message = _error(good)
        assert message.startswith(f"inventory.file: {path}") and expected in message, message


def test_fileErrors(tmp_path):
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigError, match=f"cannot read {missing}: No such file or directory"):
        loadConfig(str(missing))
    broken = tmp_path / "broken.conf"
    broken.write_text("database: x\nlisten: [\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line 3, column 1"):
        loadConfig(str(broken))
    listed = tmp_path / "list.conf"
    listed.write_text("- a\n")
    with pytest.raises(ConfigError, match="must hold a YAML mapping of keys"):
        loadConfig(str(listed))
    demo = tmp_path / "demo.conf"
    demo.write_text("demo: maybe\n")
    with pytest.raises(ConfigError, match="demo: must be true or false"):
        loadConfig(str(demo))


def test_mainReportsOneLineAndExits2(tmp_path, capsys):
    path = tmp_path / "bad.conf"
    path.write_text("database: m.db\nlisten: {http: {port: 99999}}\n")
    with pytest.raises(SystemExit) as info:
        ctl.main(["--config", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"marvinctld: {path}: listen.http.port: must be a port number 0-65535, not 99999\n"


def test_mainUsage(capsys):
    with pytest.raises(SystemExit) as info:
        ctl.main([])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("marvinctld: give --config PATH, or --demo for the quick start\n")
    assert "Traceback" not in err


def test_demoMadeOnceAndReused(tmp_path):
    directory = tmp_path / "demo"
    first = loadConfig(demo=True, demoDir=str(directory), prepareDemo=prepareDemo)
    pki = first.demo.pki
    assert pki.created
    assert first.database == str(directory / "marvin.db")
    assert first.tls.certificate == pki.certificate("server") and os.path.exists(pki.key("server"))
    assert first.tls.clientCA == (pki.certificate("ca"),)
    # the demo's agents heartbeat, so heartbeats stay required
    assert first.policy.requireHeartbeat is True and first.policy.maintenance == ()
    assert [(u.name, u.role, u.fingerprint) for u in first.bootstrap] == [
        ("Marvin demo admin", "admin", pki.fingerprints["admin"]),
        ("Marvin demo user", "user", pki.fingerprints["user"]),
        ("Node 1", "node", pki.fingerprints["node"]),
    ] + [(f"Node {n}", "node", pki.fingerprints[f"node{n}"]) for n in "2345"]
    assert len(set(pki.fingerprints.values())) == 7
    assert loadStaticInventory(first.inventory.file) == DEMO_NODES
    assert oct(os.stat(pki.key("user")).st_mode & 0o777) == "0o600"

    again = loadConfig(demo=True, demoDir=str(directory), prepareDemo=prepareDemo)
    assert not again.demo.pki.created
    assert again.demo.pki.fingerprints == pki.fingerprints
    assert again.bootstrap == first.bootstrap

    # A lost key makes a fresh set, not a half-broken one.
    os.remove(pki.key("node"))
    remade = loadConfig(demo=True, demoDir=str(directory), prepareDemo=prepareDemo)
    assert remade.demo.pki.created
    assert remade.demo.pki.fingerprints["admin"] != pki.fingerprints["admin"]


def test_demoInAFileWithOverrides(tmp_path):
    path = tmp_path / "demo.conf"
    path.write_text("demo: true\ndemo_dir: here\nlisten: {tls: {port: 0}, http: null}\nlog: {level: debug}\n")
    config = loadConfig(str(path), prepareDemo=prepareDemo)
    assert config.demo.directory == str(tmp_path / "here")
    assert config.tls.port == 0 and config.http is None
    assert config.tls.certificate == str(tmp_path / "here" / "pki" / "am-cert.pem")
    assert config.log.level == "debug"


def test_exampleFileNamesEveryKey():
    """
    The shipped example parses, and names every key the loader knows.
    """
    with open(EXAMPLE) as f:
        text = f.read()
    config = parseConfig(yaml.safe_load(text), os.path.dirname(EXAMPLE), checkFiles=False)
    assert config.tls.port == 8443 and config.http.port == 9098
    assert (config.clientLimits.readTimeout, config.clientLimits.perPeer) == (30, 64)
    assert config.sqliteSynchronous == "full"
    assert config.inventory.api.listKey == "routers"
    from am.ctl.config import KNOWN_KEYS

    document = yaml.safe_load(text)
    assert set(document) == KNOWN_KEYS
    for section, keys in {
        "listen": {"tls", "http", "request_timeout", "max_connections_per_peer"},
        "sqlite": {"synchronous"},
        "headers": {"verified", "fingerprint", "client_certificate"},
        "metrics": {"access"},
        "inventory": {"file", "api", "period", "retry"},
        "housekeeping": {"expiry_period", "sweep_period", "heal_period"},
        "notifications": {
            "allow_private", "retry_for", "backoff", "backoff_max", "timeout", "batch", "poll", "deliver", "wait_max",
            "keep",
        },
        "cors": {"origins"},
        "log": {"file", "level", "format"},
        "geni": {"authority", "trust_roots", "default_image", "default_duration", "max_request", "ad_cache"},
        "results": {"store", "directory", "spool", "period", "s3"},
    }.items():
        assert set(document[section]) == keys, section
    assert set(document["listen"]["tls"]) == {"address", "port", "certificate", "key", "client_ca"}
    api = set(document["inventory"]["api"]) | {"token_file", "oauth2"}
    assert api == {"url", "token_header", "token", "token_file", "oauth2", "timeout", "list_key", "max_bytes", "ca", "fields"}
    assert "# token_file:" in text
    # the commented oauth2 example names every key and parses as it stands
    block = text[text.index("    # oauth2:\n"):]
    lines = []
    for line in block.splitlines():
        if not line.startswith("    #"):
            break
        lines.append(line[len("    # "):])
    oauth2 = yaml.safe_load("\n".join(lines))["oauth2"]
    assert set(oauth2) == {"token_url", "client_id", "client_secret_file", "scope", "auth", "refresh_margin",
                           "timeout", "min_backoff", "max_backoff", "ca"}
    withOAuth = yaml.safe_load(text)
    del withOAuth["inventory"]["api"]["token"]
    withOAuth["inventory"]["api"]["oauth2"] = oauth2
    parsed = parseConfig(withOAuth, os.path.dirname(EXAMPLE), checkFiles=False).inventory.api.oauth2
    assert (parsed.tokenURL, parsed.clientId, parsed.margin, parsed.maxBackoff) == (
        "https://auth.example.org/oauth2/token", "marvin-scheduler", 60.0, 600.0)
    assert set(document["inventory"]["api"]["fields"]) == {"id", "hostname", "status", "tags", "lowercase_tags"}
    from am.core.policy import Policy

    assert config.policy == Policy.fromConfig(document["scheduling"])
    assert len(document["scheduling"]) == 29  # every Policy.fromConfig key


def test_demoInventoryFileMatchesTheDemo():
    assert loadStaticInventory(os.path.join(ROOT, "files", "inventory-demo.yaml")) == DEMO_NODES


def test_databasePasswordNeverLogged():
    """
    A PostgreSQL URL's password is redacted from messages.
    """
    from am.ctl.service import redacted

    assert redacted("postgresql://marvin:s3cret@db.example/marvin") == "postgresql://marvin:***@db.example/marvin"
    assert redacted("/var/lib/marvin/marvin.db") == "/var/lib/marvin/marvin.db"


def test_clientLimits(good):
    config = parseConfig(good, checkFiles=False)
    assert (config.clientLimits.readTimeout, config.clientLimits.perPeer) == (30, 64)
    good["listen"].update(request_timeout=5, max_connections_per_peer=2)
    config = parseConfig(good, checkFiles=False)
    assert (config.clientLimits.readTimeout, config.clientLimits.perPeer) == (5, 2)
    for key, value in (("request_timeout", 0), ("max_connections_per_peer", 0), ("max_connections_per_peer", "9")):
        document = copy.deepcopy(good)
        document["listen"][key] = value
        assert f"listen.{key}" in _error(document)


def test_inventoryParsedOnceAtStart(good, tmp_path, monkeypatch):
    """
    The configuration check keeps the inventory it read for the first sync,
    which takes it without parsing the file again; a later read, or a read
    of the file once changed, parses it.
    """
    from am.ctl import inventorymap

    path = tmp_path / "inventory.yaml"
    path.write_text("nodes: [{id: 1, hostname: a, tags: {type: x}}]\n")
    good["inventory"]["file"] = str(path)
    parseConfig(good, str(tmp_path), checkFiles=True)
    parsed = []
    real = yaml.load
    monkeypatch.setattr(inventorymap.yaml, "load", lambda *a, **k: parsed.append(1) or real(*a, **k))
    first = loadStaticInventory(str(path))
    assert parsed == [] and [e["id"] for e in first] == ["1"]
    assert loadStaticInventory(str(path)) == first and parsed == [1]
    loadStaticInventory(str(path), keep=True)
    path.write_text("nodes: [{id: 2}]\n")
    assert [e["id"] for e in loadStaticInventory(str(path))] == ["2"] and parsed == [1, 1, 1]


def test_libyamlWhenAvailable():
    """
    The configuration, the inventory and the node agent's files are parsed
    with LibYAML's safe loader when PyYAML has it (several times faster).
    """
    from am.ctl import inventorymap
    from cli import config as cliConfig
    from node import confcheck

    expected = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader
    assert inventorymap._LOADER is confcheck.SAFE_LOADER is cliConfig._LOADER is expected
