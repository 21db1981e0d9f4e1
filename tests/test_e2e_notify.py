"""
End to end over real sockets: a real marvinctld process POSTs signed
notifications to a real HTTP receiver listening in this test; events
written while the receiver is down survive a controller crash (SIGKILL)
and are delivered after the restart; and a held C{?wait=final} request
answers when the experiment ends.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.live_ctl import USER, LiveController
from tests.test_e2e_ctl import pki  # noqa: F401 (fixture)
from tests.waiting import waitFor

NOTIFICATIONS = {"allow_private": True, "backoff": 1, "backoff_max": 1, "timeout": 2, "poll": 0.5}


class Receiver:
    """
    A webhook receiver: records every POST (headers and body), answers 204.
    """

    def __init__(self, port: int = 0) -> None:
        received: list[tuple[dict[str, str], bytes]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bookAndEnd(live: LiveController, url: str) -> int:
    status, reply = live.call("POST", "/v1/experiments", fingerprint=USER, body={
        "name": "n", "nodecount": 1, "nodetypes": "", "script": "docker.io/a/b", "duration": 600,
        "options": {"notify": url},
    })
    assert status == 201, reply
    expid = reply["experiment"]
    status, reply = live.call("DELETE", f"/v1/experiments/{expid}", fingerprint=USER)
    assert status == 200, reply
    return expid


def checkSigned(received: list[tuple[dict[str, str], bytes]], secret: str, expid: int) -> list[dict]:
    """
    Every event of C{expid} once (de-duplicated by id), signed with C{secret}, in seq order.
    """
    events: dict[str, dict] = {}
    for headers, body in received:
        expected = hmac.new(secret.encode(), headers["x-marvin-timestamp"].encode() + b"." + body, hashlib.sha256)
        assert headers["x-marvin-signature"] == "sha256=" + expected.hexdigest()
        event = json.loads(body)
        assert headers["x-marvin-delivery"] == event["id"] and headers["x-marvin-sequence"] == str(event["seq"])
        if event["experiment"] == expid:
            events[event["id"]] = event
    return sorted(events.values(), key=lambda e: e["seq"])


def test_signedDeliveryAndRestart(pki, tmp_path):  # noqa: F811
    receiver = Receiver()
    live = LiveController(str(tmp_path), pki, notifications=NOTIFICATIONS)
    later = None
    try:
        live.ensureUser()
        status, me = live.call("GET", "/v1/backend/auth", fingerprint=USER)
        userid = me["user"]["id"]

        # 1. Delivered and signed, one POST per event, seq 1..3.
        expid = bookAndEnd(live, receiver.url())
        waitFor(lambda: len(receiver.received) >= 3, 20, "three events delivered", lambda: str(receiver.received))
        status, reply = live.call("GET", f"/v1/users/{userid}/notify-secret", fingerprint=USER)
        events = checkSigned(receiver.received, reply["secret"], expid)
        assert [(e["seq"], e["kind"]) for e in events] == [
            (1, "booking.made"), (2, "schedule.status"), (3, "experiment.archived")
        ]
        assert events[1]["event"]["new"] == "canceled"
        status, listing = live.call("GET", f"/v1/experiments/{expid}/events", fingerprint=USER)
        assert {e["state"] for e in listing["events"]} == {"delivered"}, listing

        # 2. Receiver down: attempts fail and are retried; the controller dies.
        port = freePort()
        down = bookAndEnd(live, f"http://127.0.0.1:{port}/hook")

        def failedOnce() -> bool:
            status, listing = live.call("GET", f"/v1/experiments/{down}/events", fingerprint=USER)
            rows = listing["events"]
            return len(rows) == 3 and all(r["attempts"] >= 1 and r["state"] == "pending" for r in rows)

        waitFor(failedOnce, 20, "every event tried and still pending")
        live.process.kill()

        # 3. Receiver up, controller restarted on the same database: delivered.
        later = Receiver(port)
        live.start()
        waitFor(lambda: len(checkSigned(later.received, reply["secret"], down)) == 3, 30, "delivered after restart",
                lambda: str(later.received))
        assert [e["seq"] for e in checkSigned(later.received, reply["secret"], down)] == [1, 2, 3]
    finally:
        live.stop()
        receiver.stop()
        if later is not None:
            later.stop()


def test_waitAnswersWhenFinal(pki, tmp_path):  # noqa: F811
    """
    C{GET /v1/experiments/<id>?wait=final} is held open over a real socket
    until the experiment ends, then answers C{met}.
    """
    live = LiveController(str(tmp_path), pki)
    try:
        live.ensureUser()
        status, reply = live.call("POST", "/v1/experiments", fingerprint=USER, body={
            "name": "n", "nodecount": 1, "nodetypes": "", "script": "docker.io/a/b", "duration": 600,
        })
        expid = reply["experiment"]
        # Held until the timeout while nothing changes.
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", live.ports["http"], timeout=60)
        connection.request("GET", f"/v1/experiments/{expid}?wait=final&timeout=1",
                           headers={"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": USER})
        response = connection.getresponse()
        assert (response.status, response.getheader("X-Marvin-Wait")) == (200, "timeout")
        assert time.monotonic() - started >= 0.9
        response.read()
        connection.close()
        connection = http.client.HTTPConnection("127.0.0.1", live.ports["http"], timeout=60)
        connection.request("GET", f"/v1/experiments/{expid}?wait=final&timeout=60",
                           headers={"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": USER})
        status, body = live.call("GET", f"/v1/experiments/{expid}", fingerprint=USER)
        assert body["status"] == "active"
        assert live.call("DELETE", f"/v1/experiments/{expid}", fingerprint=USER)[0] == 200
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("X-Marvin-Wait") == "met"
        assert json.loads(response.read())["status"] == "archived"
        connection.close()
    finally:
        live.stop()
