"""Publishing the issuer's two documents to S3 so STS can read them anonymously.

New buckets have ACLs disabled and Block Public Access on (S3's default since April 2023), so
``public-read`` object ACLs fail or do nothing. What works is a bucket policy that grants
``s3:GetObject`` to everyone on exactly the two keys, with the bucket's public-access block
allowing policies (and still blocking ACLs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import botocore.exceptions

from irsa_webhook.aws.changes import Plan, json_diff
from irsa_webhook.aws.session import Aws, AwsError, Caller, aws_errors, error_code, read_or_none
from irsa_webhook.oidc import DISCOVERY_PATH, JWKS_PATH

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import PublicAccessBlockConfigurationTypeDef

CACHE_CONTROL = "public, max-age=300"
"""STS caches the JWKS; an IdP that forbids caching made parallel exchanges fail. Five minutes
keeps STS's fetches rare and still lets a rotation's new key show up soon (see the README)."""

CONTENT_TYPE = "application/json"
"""OIDC discovery requires it, and S3 would store an extensionless key as binary/octet-stream."""

POLICY_SID = "IrsaWebhookPublicOidcDocuments"
"""Our statement in the bucket policy: replaced on each publish, other statements kept."""

PUBLIC_ACCESS_BLOCK: PublicAccessBlockConfigurationTypeDef = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": False,
    "RestrictPublicBuckets": False,
}


def object_prefix(issuer: str, bucket: str) -> str:
    """The key prefix the issuer's path maps to: a path-style issuer
    (``https://s3.<region>.amazonaws.com/<bucket>``) names the bucket first, which is not part
    of the key; any further path is."""
    segments = [segment for segment in urlsplit(issuer).path.split("/") if segment]
    if segments and segments[0] == bucket:
        segments = segments[1:]
    return "".join(f"{segment}/" for segment in segments)


def object_keys(issuer: str, bucket: str) -> tuple[str, str]:
    prefix = object_prefix(issuer, bucket)
    return f"{prefix}{DISCOVERY_PATH}", f"{prefix}{JWKS_PATH}"


def read_policy(caller: Caller, bucket: str, keys: tuple[str, ...]) -> dict[str, Any]:
    return {
        "Sid": POLICY_SID,
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": [f"arn:{caller.partition}:s3:::{bucket}/{key}" for key in keys],
    }


def merged_policy(current: dict[str, Any] | None, statement: dict[str, Any]) -> dict[str, Any]:
    """``current`` with our statement in place of any earlier one of ours."""
    policy = dict(current or {"Version": "2012-10-17"})
    others = [s for s in policy.get("Statement", []) if s.get("Sid") != POLICY_SID]
    policy["Statement"] = [*others, statement]
    policy.setdefault("Version", "2012-10-17")
    return policy


def plan_publish(
    aws: Aws, caller: Caller, bucket: str, region: str | None, documents: Mapping[str, bytes]
) -> Plan:
    """What must change so ``documents`` (key to content) are world-readable in ``bucket``."""
    s3 = aws.s3()
    plan = Plan()
    exists = _bucket_exists(aws, bucket, caller)
    if exists:
        plan.keep(f"bucket s3://{bucket}")
    else:
        configuration: dict[str, Any] = {}
        if region and region != "us-east-1":
            configuration = {"CreateBucketConfiguration": {"LocationConstraint": region}}

        def create_bucket() -> None:
            with aws_errors(f"s3:CreateBucket {bucket}"):
                s3.create_bucket(Bucket=bucket, **configuration)

        plan.add(f"create bucket s3://{bucket}", create_bucket)

    block = _public_access_block(aws, bucket, caller) if exists else None
    if block == PUBLIC_ACCESS_BLOCK:
        plan.keep(f"public access block of s3://{bucket} (ACLs blocked, policies allowed)")
    else:

        def put_block() -> None:
            with aws_errors(f"s3:PutPublicAccessBlock {bucket}"):
                s3.put_public_access_block(
                    Bucket=bucket,
                    PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK,
                    ExpectedBucketOwner=caller.account,
                )

        plan.add(
            f"set the public access block of s3://{bucket}: block ACLs, allow the read policy",
            put_block,
        )

    current_policy = _bucket_policy(aws, bucket, caller) if exists else None
    policy = merged_policy(current_policy, read_policy(caller, bucket, tuple(documents)))
    if current_policy == policy:
        plan.keep(f"bucket policy of s3://{bucket} (anonymous s3:GetObject on the documents)")
    else:
        text = json.dumps(policy)

        def put_policy() -> None:
            with aws_errors(f"s3:PutBucketPolicy {bucket}"):
                s3.put_bucket_policy(Bucket=bucket, Policy=text, ExpectedBucketOwner=caller.account)

        plan.add(
            f"put the bucket policy of s3://{bucket}: anonymous s3:GetObject on "
            f"{', '.join(documents)}",
            put_policy,
            json_diff(current_policy, policy, "bucket policy"),
        )

    for key, body in documents.items():
        if exists and _object_is(aws, bucket, key, body, caller):
            plan.keep(f"s3://{bucket}/{key}")
            continue

        def put_object(key: str = key, body: bytes = body) -> None:
            with aws_errors(f"s3:PutObject {bucket}/{key}"):
                s3.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=body,
                    ContentType=CONTENT_TYPE,
                    CacheControl=CACHE_CONTROL,
                    ExpectedBucketOwner=caller.account,
                )

        plan.add(
            f"put s3://{bucket}/{key} ({CONTENT_TYPE}, Cache-Control: {CACHE_CONTROL})", put_object
        )
    return plan


def _bucket_exists(aws: Aws, bucket: str, caller: Caller) -> bool:
    try:
        aws.s3().head_bucket(Bucket=bucket, ExpectedBucketOwner=caller.account)
    except botocore.exceptions.ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket"):
            return False
        if code in ("403", "AccessDenied"):
            raise AwsError(
                f"s3:HeadBucket {bucket}: access denied; the bucket belongs to another account, "
                "or these credentials may not read it"
            ) from None
        raise AwsError(f"s3:HeadBucket {bucket}: {code}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise AwsError(f"s3:HeadBucket {bucket}: {exc}") from None
    return True


def _public_access_block(
    aws: Aws, bucket: str, caller: Caller
) -> PublicAccessBlockConfigurationTypeDef | None:
    answer = read_or_none(
        f"s3:GetPublicAccessBlock {bucket}",
        lambda: aws.s3().get_public_access_block(Bucket=bucket, ExpectedBucketOwner=caller.account),
        "NoSuchPublicAccessBlockConfiguration",
    )
    return answer["PublicAccessBlockConfiguration"] if answer else None


def _bucket_policy(aws: Aws, bucket: str, caller: Caller) -> dict[str, Any] | None:
    answer = read_or_none(
        f"s3:GetBucketPolicy {bucket}",
        lambda: aws.s3().get_bucket_policy(Bucket=bucket, ExpectedBucketOwner=caller.account),
        "NoSuchBucketPolicy",
    )
    policy: dict[str, Any] | None = json.loads(answer["Policy"]) if answer else None
    return policy


def _object_is(aws: Aws, bucket: str, key: str, body: bytes, caller: Caller) -> bool:
    answer = read_or_none(
        f"s3:GetObject {bucket}/{key}",
        lambda: aws.s3().get_object(Bucket=bucket, Key=key, ExpectedBucketOwner=caller.account),
        "NoSuchKey",
        "404",
    )
    return bool(
        answer is not None
        and answer["Body"].read() == body
        and answer.get("ContentType") == CONTENT_TYPE
        and answer.get("CacheControl") == CACHE_CONTROL
    )
