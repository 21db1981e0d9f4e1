"""
Schema-driven fuzzing (schemathesis) of the REST face against a real
marvinctld on SQLite: every operation of C{schemas/openapi.json}, as an
experimenter and as an admin, with a fixed seed and a small case budget (the
run it: .venv/bin/python -m pytest -p no:randomly scripts/fuzz_rest.py; not yet in the suite: a few cross-field cases in nodetypes whitespace and NUL still fail). Checks: no 5xx, statuses, content types,
headers and bodies as documented, and no schema-valid request refused with 400
(the document is as strict as the server).

C{MARVIN_FUZZ_EXAMPLES} sets the budget per operation and identity.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.openapi.checks import RejectedPositiveData

from am.devtools.demopki import ensureDemoPKI
from tests.live_ctl import USER, LiveController

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = int(os.environ.get("MARVIN_FUZZ_EXAMPLES", "6"))
SEED = int(os.environ.get("MARVIN_FUZZ_SEED", "13"))

schema = schemathesis.openapi.from_path(os.path.join(ROOT, "schemas", "openapi.json"))
# PUT /experiments/<id> without the second id exists only to say how to merge (always 400).
schema = schema.exclude(method="PUT", path_regex=r"^/experiments/\{id\}$")

# Rules across parameters that JSON Schema cannot state; the document's
# descriptions say them, and the server's 400 names them.
CROSS_FIELD = (
    re.compile(r"^stop must not be before start$"),
    re.compile(r"^A listing may span at most \d+ seconds\.$"),
    re.compile(r"^stop and duration disagree"),
    # admins change nodes with type, status or pair; nodes heartbeat with none of them
    re.compile(r"^Parameters missing \(any of: type, status, pair\)\.$"),
    re.compile(r"^A node cannot be paired with itself\.$"),
)
# Unknown parameters are accepted on purpose (old scripts send them; a
# submission reports them in warnings).
UNKNOWN = "x-schemathesis-unknown-property"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    directory = tempfile.mkdtemp(prefix="marvin-fuzz-pki-")
    controller = LiveController(str(tmp_path_factory.mktemp("fuzz")), ensureDemoPKI(directory))
    controller.ensureUser()
    yield controller
    controller.stop()
    shutil.rmtree(directory, ignore_errors=True)


def _crossField(response) -> bool:
    if response.status_code != 400:
        return False
    try:
        message = json.loads(response.content)["message"]
    except (ValueError, KeyError, TypeError):
        return False
    return any(rule.search(message) for rule in CROSS_FIELD)


def exercise(case, live, fingerprint: str) -> None:
    case.headers = {**(case.headers or {}), "VERIFIED": "SUCCESS", "SSL_FINGERPRINT": fingerprint}
    response = case.call(base_url=f"http://127.0.0.1:{live.ports['http']}", timeout=30)
    unknown = UNKNOWN in repr((case.query, case.body, case.path_parameters))

    def expected(error: BaseException) -> bool:
        return (isinstance(error, RejectedPositiveData) and _crossField(response)) or (
            isinstance(error, AcceptedNegativeData) and unknown
        )

    try:
        case.validate_response(response)
    except BaseExceptionGroup as group:
        _, rest = group.split(expected)
        if rest is not None:
            raise rest from None
    except (RejectedPositiveData, AcceptedNegativeData) as error:
        if not expected(error):
            raise


@schema.parametrize()
@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_asExperimenter(case, live):
    exercise(case, live, USER)


@schema.parametrize()
@seed(SEED + 1)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_asAdmin(case, live):
    exercise(case, live, live.pki.fingerprints["admin"])
