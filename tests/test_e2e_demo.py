"""
End to end, the demo as a newcomer runs it: C{marvinctld} on a configuration
holding C{demo: true} (free ports, short scheduling delays) starts its node
agents (five C{marvind} processes, local runtime); a booking over REST runs
through C{defined -> deployed -> started -> finished} on a real agent; and
the timeline page, driven in headless Chromium (Selenium with Debian's
chromedriver), shows the demo nodes and a booking changing colour as its task
runs, zooms, filters, and logs no console error. A screenshot is kept in
C{tests-output/} (ignored by git).

Waits are on conditions with deadlines (polling), never fixed sleeps.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest
import yaml

from tests.test_e2e_ctl import ROOT, Client
from tests.waiting import waitFor

OUTPUT = os.path.join(ROOT, "tests-output")
TASK_DEADLINE = 90.0


class DemoPKIFiles:
    """
    The demo directory's certificates, as L{Client} wants them.
    """

    def __init__(self, directory: str) -> None:
        self.directory = os.path.join(directory, "pki")

    STEMS = {"ca": "ca", "user": "user-demo", "admin": "user-admin"}

    def certificate(self, who: str) -> str:
        return os.path.join(self.directory, f"{self.STEMS.get(who, who)}-cert.pem")

    def key(self, who: str) -> str:
        return os.path.join(self.directory, f"{self.STEMS.get(who, who)}-key.pem")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: Any) -> Any:
    """
    A demo controller with its agents; yields C{(client, directory, process)}.
    """
    base = str(tmp_path_factory.mktemp("demo"))
    directory = os.path.join(base, "marvin-demo")
    config = os.path.join(base, "demo.yaml")
    with open(config, "w") as f:
        yaml.safe_dump({
            "demo": True,
            "demo_dir": directory,
            "listen": {"tls": {"port": 0}, "http": {"port": 0}},
            "scheduling": {"min_delay": 5, "padding": 1, "min_runtime": 10},
            "log": {"file": os.path.join(base, "marvinctld.log"), "level": "info"},
        }, f)
    from tests.test_e2e_ctl import Process

    process = Process(["--config", config])
    # The log goes to a file; the ports come with the printed instructions.
    match = process.waitFor(r"TLS \(client certificate required\): https://localhost:(\d+)/")
    https = int(match.group(1))
    match = process.waitFor(r"Plain HTTP for a TLS proxy on loopback: http://127\.0\.0\.1:(\d+)/")
    client = Client({"https": https, "http": int(match.group(1))}, DemoPKIFiles(directory))
    try:
        yield client, directory, process, base
    finally:
        code = process.stop()
        agents = [p for p in _agentProcesses(directory)]
        assert code == 0, "\n".join(process.output)
        assert agents == [], f"agents left running: {agents}"


def _agentProcesses(directory: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if "node.tap" in command and directory in command:
            found.append(int(pid))
    return found


def _allHeartbeating(client: Client) -> bool:
    status, nodes = client.call("GET", "/v1/resources", who="user")
    return status == 200 and all(n["heartbeat"] > 0 for n in nodes if n["status"] == "active")


def _book(client: Client, seconds: float = 2, duration: int = 30) -> tuple[int, int]:
    status, body = client.call("POST", "/v1/experiments", who="user", body={
        "name": "first-task", "script": "docker.io/library/hello-world", "nodecount": 1,
        "nodetypes": "type:testing", "start": 0, "duration": duration, "options": {"seconds": seconds},
    })
    assert status == 201, body
    expid = body["experiment"]
    status, experiment = client.call("GET", f"/v1/experiments/{expid}/schedules", who="user")
    (schedid,) = experiment["schedules"]
    return expid, int(schedid)


def _status(client: Client, schedid: int) -> str:
    status, body = client.call("GET", f"/v1/schedules/{schedid}", who="user")
    assert status == 200, body
    return body["status"].split(";")[0]


def test_demoTaskRunsToFinished(demo: Any) -> None:
    """
    Every active demo node heartbeats through its own agent; a booking made
    as the demo user goes defined -> deployed -> started -> finished on the
    local runtime, the program's output lands in the task's results, and the
    calendar feeds show it.
    """
    client, directory, process, base = demo
    waitFor(lambda: _allHeartbeating(client), 60, "every active demo node heartbeats")
    expid, schedid = _book(client)
    seen = [_status(client, schedid)]

    def progressed() -> bool:
        status = _status(client, schedid)
        if status != seen[-1]:
            seen.append(status)
        return status in ("finished", "failed", "stopped")

    waitFor(progressed, TASK_DEADLINE, f"task {schedid} ends (seen {seen})")
    assert seen[-1] == "finished", seen
    assert "started" in seen, seen
    assert seen.index("started") > seen.index("deployed") if "deployed" in seen else True
    status, feed = client.call("GET", f"/v1/experiments/{expid}/schedules.json", who="user")
    assert status == 200 and feed["events"][0]["status"] == "finished"
    status, ics = client.call("GET", "/v1/schedules.ics?mine=1", who="user")
    assert status == 200 and "first-task on node" in ics.replace("\r\n ", "")
    nodeid = str(feed["events"][0]["nodeid"])
    results = os.path.join(directory, "agents", f"node{nodeid}", "state")
    logs = []
    for root, _, files in os.walk(results):
        logs += [os.path.join(root, f) for f in files if f == "task.log"]
    assert logs, f"no task.log under {results}"
    with open(logs[0]) as f:
        assert "Hello from Marvin!" in f.read()


# -- the timeline page in a real browser ------------------------------------------


def _browser(port: int, fingerprint: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    assert chromium and driver, "chromium and chromedriver are needed (scripts/test.sh installs them on Debian)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,800", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(driver))
    # What a TLS proxy in front of the plain listener would add for the demo user.
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                            {"headers": {"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": fingerprint}})
    return browser


def _js(browser: Any, script: str) -> Any:
    return browser.execute_script(script)


def test_timelineInBrowser(demo: Any) -> None:
    """
    The page loads through the proxy listener as the demo user, shows the
    demo nodes, shows a new booking whose bar changes colour as its task
    runs, zooms, filters by tag (server side) and by experiment, shows a
    bar's details on click, finds free windows, and logs no console error.
    """
    client, directory, process, base = demo
    from am.devtools.demopki import fingerprint as fingerprintOf
    from cryptography import x509

    with open(client.pki.certificate("user"), "rb") as f:
        fingerprint = fingerprintOf(x509.load_pem_x509_certificate(f.read()))
    waitFor(lambda: _allHeartbeating(client), 60, "every active demo node heartbeats")
    browser = _browser(client.ports["http"], fingerprint)
    os.makedirs(OUTPUT, exist_ok=True)
    try:
        browser.get(f"http://127.0.0.1:{client.ports['http']}/ui/")
        waitFor(lambda: _js(browser, "return window.marvinTimeline && marvinTimeline.state.ready"), 30, "page ready")
        rows = _js(browser, "return marvinTimeline.state.rows.map(n => n.hostname)")
        assert rows == [f"demo-node-{i}" for i in range(1, 7)], rows
        assert "demo" in browser.find_element("id", "who").text

        browser.find_element("css selector", "[data-span='3600']").click()
        expid, schedid = _book(client, seconds=3, duration=300)
        colours: list[str] = []

        def colourNow() -> str:
            return _js(browser, f"""
                const t = marvinTimeline;
                t.draw();
                const c = t.barCentre({schedid});
                if (!c) return null;
                return [t.state.byId.get({schedid}).status, t.pixel(c.x, c.y)].join(" ");
            """) or ""

        def observe() -> bool:
            found = colourNow()
            if found and (not colours or colours[-1] != found):
                colours.append(found)
            return found.startswith("finished ")

        waitFor(observe, TASK_DEADLINE, f"the bar of task {schedid} turns 'finished' (seen {colours})")
        palette = _js(browser, "return marvinTimeline.colours")
        for entry in colours:
            status, pixel = entry.split()
            assert pixel == palette[status], (entry, palette[status])
        assert len({entry.split()[1] for entry in colours}) >= 2, colours
        browser.save_screenshot(os.path.join(OUTPUT, "timeline.png"))

        # click the bar: its details, with the status history seen
        centre = _js(browser, f"return marvinTimeline.barCentre({schedid})")
        canvas = browser.find_element("id", "canvas")
        from selenium.webdriver.common.action_chains import ActionChains

        size = canvas.size
        ActionChains(browser).move_to_element_with_offset(
            canvas, centre["x"] - size["width"] // 2, centre["y"] - size["height"] // 2
        ).click().perform()
        waitFor(lambda: "first-task" in browser.find_element("id", "details").text, 10, "details shown")
        details = browser.find_element("id", "details").text
        assert f"(#{expid})" in details and "finished" in details and "Marvin demo user" in details

        # zoom: the 1 w button and the + button
        browser.find_element("css selector", "[data-span='604800']").click()
        assert _js(browser, "return marvinTimeline.state.view.span") == 604800
        browser.find_element("id", "zoomin").click()
        assert _js(browser, "return marvinTimeline.state.view.span") == 302400

        # filter by tag (server side) and by experiment
        box = browser.find_element("id", "nodetypes")
        box.send_keys("country:no")
        browser.find_element("css selector", "#filters button[type=submit]").click()
        waitFor(lambda: _js(browser, "return marvinTimeline.state.rows.length") == 2, 10, "tag filter")
        assert _js(browser, f"return marvinTimeline.barCentre({schedid})") is None
        box.clear()
        browser.find_element("id", "experiment").send_keys(str(expid + 1000))
        browser.find_element("css selector", "#filters button[type=submit]").click()
        waitFor(lambda: _js(browser, "return marvinTimeline.state.rows.length") == 6, 10, "filter cleared")

        # free windows
        browser.find_element("css selector", "#find button[type=submit]").click()
        waitFor(lambda: browser.find_elements("css selector", "#slots li"), 10, "free windows listed")

        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == [], errors
    finally:
        browser.quit()
