"""
A local S3-compatible server for tests: moto's server mode as a subprocess
on a free loopback port (the S3 results store talks to it over real HTTP).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from typing import Any

from tests.waiting import waitFor

ACCESS, SECRET, REGION = "testing", "testing-secret", "us-east-1"


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """
    One moto server; L{client} makes boto3 clients for it, L{stop} ends it.
    """

    def __init__(self) -> None:
        self.port = freePort()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        waitFor(self._answers, 30, f"moto server on port {self.port}")

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.url + "/", timeout=1).read()
        except OSError as e:
            return getattr(e, "code", None) is not None  # an HTTP error is an answer
        return True

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.url, region_name=REGION,
            aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
        )

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
