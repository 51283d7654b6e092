"""boto3 with its standard configuration (profiles, ``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_CA_BUNDLE``), so the same commands reach AWS or a local
emulator; and AWS failures as one line a user can act on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import boto3
import botocore.exceptions

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")


class AwsError(Exception):
    """An AWS call failed, or AWS cannot be reached with the configuration at hand; the message
    is one line naming the call and what AWS said."""


@dataclass(frozen=True)
class Caller:
    """Who the credentials belong to: the account and partition every ARN we build uses."""

    account: str
    partition: str
    arn: str


@dataclass
class Aws:
    session: boto3.Session

    def iam(self) -> IAMClient:
        return self.session.client("iam")

    def s3(self) -> S3Client:
        return self.session.client("s3")

    def caller(self) -> Caller:
        with aws_errors("sts:GetCallerIdentity"):
            identity = self.session.client("sts").get_caller_identity()
        arn = identity["Arn"]
        return Caller(account=identity["Account"], partition=arn.split(":")[1], arn=arn)


def connect(profile: str | None = None, region: str | None = None) -> Aws:
    """A session as the AWS CLI would make it; refuses early when there are no credentials."""
    with aws_errors("configuration"):
        session = boto3.Session(profile_name=profile, region_name=region)
        if session.get_credentials() is None:
            raise AwsError(
                "no AWS credentials: set AWS_PROFILE (or --profile), AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or run where a role provides them"
            )
    return Aws(session)


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turns botocore's exceptions into one ``AwsError`` line."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        raise AwsError(_described(action, exc)) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise AwsError(f"{action}: {exc}") from None


def read_or_none(action: str, call: Callable[[], T], *missing: str) -> T | None:
    """``call()``, or None when AWS answers one of the ``missing`` error codes (NoSuchEntity,
    NoSuchBucketPolicy, ...): reading state where absence is an answer, not a failure."""
    try:
        return call()
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) in missing:
            return None
        raise AwsError(_described(action, exc)) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise AwsError(f"{action}: {exc}") from None


def error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _described(action: str, exc: botocore.exceptions.ClientError) -> str:
    error = exc.response.get("Error", {})
    message = " ".join(str(error.get("Message", "")).split())
    return f"{action}: {error.get('Code', 'Error')}: {message}".rstrip(": ")
