# -*- test-case-name: tests.test_results_store -*-
"""
Results in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, Garage...)
through boto3, the store's well-kept client (the C{s3} extra). Each key is
an object under the configured prefix; reads ask for byte ranges, so a
download streams without holding the object in memory.
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional

from zope.interface import implementer

from am.results.interfaces import IResultStore


class _Body:
    """
    A reader over a botocore streaming body.
    """

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, size: int) -> bytes:
        return self._body.read(size)

    def close(self) -> None:
        self._body.close()


class _Empty:
    def read(self, size: int) -> bytes:
        return b""

    def close(self) -> None:
        pass


@implementer(IResultStore)
class S3ResultStore:
    """
    @param endpoint: the service URL (C{None}: AWS itself).
    @param client: a boto3 S3 client (tests and special set-ups); made from
        the other arguments when C{None}.
    """

    def __init__(
        self,
        bucket: str,
        endpoint: Optional[str] = None,
        region: Optional[str] = None,
        accessKey: Optional[str] = None,
        secretKey: Optional[str] = None,
        prefix: str = "",
        client: Any = None,
    ) -> None:
        if client is None:
            import boto3  # the optional "s3" extra

            client = boto3.client(
                "s3", endpoint_url=endpoint, region_name=region,
                aws_access_key_id=accessKey, aws_secret_access_key=secretKey,
            )
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self.description = f"bucket {bucket} at {endpoint or 'AWS'}"

    def _name(self, key: str) -> str:
        schedid, _, name = key.partition("/")
        return f"{self.prefix}{int(schedid)}/{hashlib.sha256(name.encode('utf-8')).hexdigest()}"

    def put(self, key: str, source: str) -> None:
        self._client.upload_file(source, self.bucket, self._name(key))

    def open(self, key: str, offset: int, length: int) -> Any:
        if length <= 0:
            return _Empty()
        answer = self._client.get_object(
            Bucket=self.bucket, Key=self._name(key), Range=f"bytes={offset}-{offset + length - 1}"
        )
        return _Body(answer["Body"])

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as e:
            code = getattr(e, "response", {}).get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True
