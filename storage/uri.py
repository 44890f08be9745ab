"""S3 URIs as a value object (``S3Uri``) and the one test for "is this an S3 URI" (``is_s3``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = ["S3Uri", "is_s3"]

SCHEME = "s3://"

# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html (simplified)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


def is_s3(uri: object) -> bool:
    """Whether ``uri`` (a string or path-like) names an S3 object or prefix (``s3://…``)."""
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    return isinstance(uri, str) and uri.startswith(SCHEME)


@dataclass(frozen=True)
class S3Uri:
    """``s3://bucket/key``: ``key`` may be ``""`` (the bucket root) or end in ``/`` (a prefix)."""

    bucket: str
    key: str = ""

    def __post_init__(self) -> None:
        if not _BUCKET.fullmatch(self.bucket):
            raise ValueError(
                f"bucket={self.bucket!r}: not a valid S3 bucket name "
                "(3-63 characters: lowercase letters, digits, '.', '-')"
            )
        if not isinstance(self.key, str):
            raise ValueError(f"key={self.key!r}: expected a string")

    @classmethod
    def parse(cls, uri: str | os.PathLike[str]) -> S3Uri:
        """``s3://bucket/key/parts`` → ``S3Uri("bucket", "key/parts")``.

        Raises ``ValueError`` naming the URI when it is not ``s3://`` or the bucket name is invalid.
        """
        if not is_s3(uri):
            raise ValueError(f"{uri!r}: expected an s3://bucket/key URI")
        text = os.fspath(uri)
        bucket, _, key = text[len(SCHEME) :].partition("/")
        if not bucket:
            raise ValueError(f"{text!r}: no bucket name after s3://")
        try:
            return cls(bucket, key)
        except ValueError as e:
            raise ValueError(
                f"{text!r}: bucket {bucket!r} is not a valid S3 bucket name "
                "(3-63 characters: lowercase letters, digits, '.', '-')"
            ) from e

    def child(self, key: str) -> S3Uri:
        """The object ``key`` in the same bucket (``key`` is absolute within the bucket)."""
        return S3Uri(self.bucket, key)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"
