"""The AWS edge of ``doctor``: IAM reads and one unsigned STS call, through boto3's standard
configuration (environment, profile, ``AWS_ENDPOINT_URL_*``, ``AWS_CA_BUNDLE``).

boto3 is the optional ``aws`` extra, imported here only, and this module only when doctor
reaches its AWS checks. Read-only: GetOpenIDConnectProvider, ListOpenIDConnectProviders,
GetRole; AssumeRoleWithWebIdentity changes nothing and needs no credentials (STS does not
sign-check it), so the probe runs even where the IAM reads cannot.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from irsa_webhook.doctor.aws_checks import AwsFacts, StsOutcome, provider_arn_for

SESSION_NAME = "irsa-webhook-doctor"
PROBE_DURATION = 900
"""The shortest session STS grants; the probe's credentials are never used."""


def read_aws(
    role_arn: str,
    issuer: str,
    token: str,
    environ: Mapping[str, str] = os.environ,
) -> AwsFacts:
    """Everything the AWS checks judge, each part with the reason it could not be read."""
    try:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        reason = "boto3 is not installed: install irsa-webhook[aws] to run the AWS checks"
        return AwsFacts(iam_unavailable=reason, sts_unavailable=reason)

    provider_arn = provider_arn_for(role_arn, issuer)
    session = boto3.Session()
    config = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2})
    errors = (ClientError, BotoCoreError)

    def failure(exc: Exception) -> str:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error") or {}
            return f"{error.get('Code', 'Error')}: {error.get('Message', '')}"
        return f"{type(exc).__name__}: {exc}"

    iam_facts: dict[str, Any] = {"provider_arn": provider_arn}
    if session.get_credentials() is None:
        iam_facts["iam_unavailable"] = (
            "no AWS credentials in boto3's standard configuration; the IAM checks need "
            "iam:GetOpenIDConnectProvider, iam:ListOpenIDConnectProviders and iam:GetRole"
        )
    else:
        iam = session.client("iam", config=config)
        try:
            iam_facts["provider"] = iam.get_open_id_connect_provider(
                OpenIDConnectProviderArn=provider_arn
            )
        except errors as exc:
            iam_facts["provider_error"] = failure(exc)
            try:
                listed = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
                iam_facts["provider_arns"] = tuple(p["Arn"] for p in listed)
            except errors:
                pass
        try:
            role = iam.get_role(RoleName=role_arn.rpartition("/")[2])["Role"]
            iam_facts["trust_policy"] = role.get("AssumeRolePolicyDocument")
        except errors as exc:
            iam_facts["role_error"] = failure(exc)

    endpoint = environ.get("AWS_ENDPOINT_URL_STS") or environ.get("AWS_ENDPOINT_URL")
    if not session.region_name and not endpoint:
        return AwsFacts(
            **iam_facts,
            sts_unavailable="no AWS region or STS endpoint configured: set AWS_REGION (or "
            "AWS_ENDPOINT_URL_STS) to probe STS",
        )
    sts = session.client(
        "sts",
        region_name=session.region_name or "us-east-1",
        config=config.merge(Config(signature_version=UNSIGNED)),
    )
    try:
        answer = sts.assume_role_with_web_identity(
            RoleArn=role_arn,
            RoleSessionName=SESSION_NAME,
            WebIdentityToken=token,
            DurationSeconds=PROBE_DURATION,
        )
    except ClientError as exc:
        error = exc.response.get("Error") or {}
        outcome = StsOutcome(
            error_code=str(error.get("Code", "Error")), error_message=str(error.get("Message", ""))
        )
    except BotoCoreError as exc:
        outcome = StsOutcome(error_code=type(exc).__name__, error_message=str(exc))
    else:
        outcome = StsOutcome(
            assumed_role_arn=str((answer.get("AssumedRoleUser") or {}).get("Arn", "")),
            subject=str(answer.get("SubjectFromWebIdentityToken") or ""),
            audience=str(answer.get("Audience") or ""),
            provider=str(answer.get("Provider") or ""),
        )
    return AwsFacts(**iam_facts, sts=outcome)
