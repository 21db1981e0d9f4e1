"""
Where the server's time goes in one GENI call (not a test): each step of the
new-connection path measured in process, as CPU time on the server's side.

Used by bench_geni.py; the steps are the TLS handshake (full, by AM key type,
and resumed from a ticket), turning the client certificate into the caller,
decoding the XML-RPC request, the credential check (first and cached), and
encoding the answer. What the real server spends beyond their sum is Twisted's
HTTP handling, TLS records and socket calls.
"""

from __future__ import annotations

import time
import xmlrpc.client
from typing import Any, Callable, Optional

from OpenSSL import SSL
from OpenSSL._util import lib as _lib

from am.devtools import authority
from am.devtools.pki import Identity, newKey
from am.geni.xmlrpc import loads
from am.trust.certs import callerFromCertificate
from am.trust.gate import Trust
from am.trust.tls import serverTLSOptions


def cpuMs(step: Callable[[], Any], repeat: int) -> float:
    """
    Median process CPU milliseconds of C{step}.
    """
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        step()
        times.append(time.process_time() - t0)
    times.sort()
    return times[len(times) // 2] * 1000


def _pump(client: SSL.Connection, server: SSL.Connection) -> float:
    """
    Run one handshake through memory BIOs; the server side's CPU seconds.
    """
    spent, done = 0.0, [False, False]
    for _ in range(20):
        for i, (side, other) in enumerate(((client, server), (server, client))):
            t0 = time.process_time()
            if not done[i]:
                try:
                    side.do_handshake()
                    done[i] = True
                except SSL.WantReadError:
                    pass
            if i == 1:
                try:
                    server.recv(1)  # TLS 1.3: the client's certificate arrives after its Finished
                except (SSL.WantReadError, SSL.ZeroReturnError):
                    pass
                spent += time.process_time() - t0
            try:
                other.bio_write(side.bio_read(1 << 20))
            except SSL.WantReadError:
                pass
        if all(done) and server.get_peer_certificate() is not None:
            break
    return spent


def handshakeMs(amKey: str, user: Identity, ca: Identity, repeat: int = 60) -> tuple[float, float]:
    """
    Server CPU ms of a full handshake with an AM key of kind C{amKey}
    (C{rsa} or C{ec}), and of a handshake resumed from a session ticket.
    """
    am = authority.makeAM(None, ca, "localhost", key=newKey(amKey))
    serverContext = serverTLSOptions(am.chainPEM, am.keyPEM, ca.certPEM).getContext()
    clientContext = SSL.Context(SSL.TLS_CLIENT_METHOD)
    clientContext.use_certificate(user.certificate)
    clientContext.use_privatekey(user.key)
    clientContext.set_verify(SSL.VERIFY_NONE, lambda *a: True)
    # What Python's ssl and Java offer first: X25519 (this OpenSSL would
    # pick a post-quantum hybrid no GENI client sends yet).
    _lib.SSL_CTX_set1_curves_list(clientContext._context, b"X25519")
    clientContext.set_session_cache_mode(SSL.SESS_CACHE_CLIENT)  # keep sessions resumable

    def connect(session: Optional[Any]) -> tuple[float, Any]:
        server = SSL.Connection(serverContext, None)
        server.set_accept_state()
        client = SSL.Connection(clientContext, None)
        client.set_connect_state()
        if session is not None:
            client.set_session(session)
        spent = _pump(client, server)
        for _ in range(3):  # collect the TLS 1.3 tickets, sent after the handshake
            try:
                client.bio_write(server.bio_read(1 << 20))
            except SSL.WantReadError:
                pass
            try:
                client.recv(1)
            except (SSL.WantReadError, SSL.ZeroReturnError):
                pass
        if session is not None and not _lib.SSL_session_reused(server._ssl):
            raise RuntimeError("the session was not resumed")
        # Closed cleanly: OpenSSL spoils the session of a connection freed without.
        client.set_shutdown(SSL.SENT_SHUTDOWN | SSL.RECEIVED_SHUTDOWN)
        return spent, client.get_session()

    full = sorted(connect(None)[0] for _ in range(repeat))[repeat // 2] * 1000
    _, session = connect(None)
    times = []
    for _ in range(repeat):  # each resumption offers the newest ticket (a ticket is used once)
        spent, session = connect(session)
        times.append(spent)
    return full, sorted(times)[repeat // 2] * 1000


def breakdown(ca: Identity, user: Identity, credential: str, body: bytes, answerValue: str,
              amURN: str) -> list[tuple[str, float]]:
    """
    The steps of one call, server CPU ms each.
    """
    rows = []
    full, resumed = handshakeMs("rsa", user, ca)
    rows.append(("TLS 1.3 full handshake, AM key RSA-2048", full))
    full, resumed = handshakeMs("ec", user, ca)
    rows.append(("TLS 1.3 full handshake, AM key ECDSA P-256", full))
    rows.append(("TLS 1.3 resumed handshake (session ticket)", resumed))
    rows.append(("client certificate -> caller URN (per connection)",
                 cpuMs(lambda: callerFromCertificate(user.certificate), 200)))
    rows.append(("XML-RPC decode of the request", cpuMs(lambda: loads(body), 200)))
    caller = callerFromCertificate(user.certificate)
    creds = [{"geni_type": "geni_sfa", "geni_version": "3", "geni_value": credential}]

    def check(fresh: bool) -> None:
        trust = Trust([ca.certificate], amURN)
        trust.authorize(caller, "ListResources", credentials=creds)
        if not fresh:
            rows.append(("credential check, cached by digest (every call)",
                         cpuMs(lambda: trust.authorize(caller, "ListResources", credentials=creds), 200)))

    rows.append(("credential check, first sight (signature, chain)", cpuMs(lambda: check(True), 20)))
    check(False)
    answer = {"code": {"geni_code": 0}, "value": answerValue, "output": ""}
    rows.append(("XML-RPC encode of the answer",
                 cpuMs(lambda: xmlrpc.client.dumps((answer,), methodresponse=True), 200)))
    return rows
