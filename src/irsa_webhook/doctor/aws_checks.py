"""provider-exists, provider-audience, trust-policy, sts-probe: the AWS side, judged from what
``aws_side`` read. Pure, and free of boto3."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from irsa_webhook.aws.trust_policy import PolicyError, WebIdentityRequest, evaluate
from irsa_webhook.doctor.issuer_checks import NO_PROVIDER
from irsa_webhook.doctor.report import CheckResult, Status, ok, skipped

NOT_AUTHORIZED = (
    "An error occurred (AccessDenied) when calling the AssumeRoleWithWebIdentity operation: "
    "Not authorized to perform sts:AssumeRoleWithWebIdentity"
)
INCORRECT_AUDIENCE = (
    "An error occurred (InvalidIdentityToken) when calling the AssumeRoleWithWebIdentity "
    "operation: Incorrect token audience"
)


@dataclass(frozen=True, slots=True)
class StsOutcome:
    """AssumeRoleWithWebIdentity's answer: the assumed role, or STS's error code and message."""

    assumed_role_arn: str = ""
    subject: str = ""
    audience: str = ""
    provider: str = ""
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class AwsFacts:
    """What doctor read from IAM and STS; a non-empty ``*_unavailable`` says why it did not."""

    iam_unavailable: str = ""
    provider_arn: str = ""
    provider: Mapping[str, Any] | None = None
    provider_error: str = ""
    """``NoSuchEntity``, or another error code with its message."""
    provider_arns: Sequence[str] = field(default=())
    """Every OIDC provider in the account, to name a near miss."""
    trust_policy: Mapping[str, Any] | str | None = None
    role_error: str = ""
    sts_unavailable: str = ""
    sts: StsOutcome | None = None


def provider_arn_for(role_arn: str, issuer: str) -> str:
    """The IAM OIDC provider ARN STS looks up for a token of ``issuer`` assuming ``role_arn``."""
    partition, account = role_arn.split(":")[1], role_arn.split(":")[4]
    return f"arn:{partition}:iam::{account}:oidc-provider/{issuer.removeprefix('https://')}"


def check_provider_exists(
    facts: AwsFacts, issuer: str, issuer_match: CheckResult | None = None
) -> CheckResult:
    """The provider STS looks up exists. Only another spelling of it (a trailing slash, a
    port) is the link issuer-match names: then this check warns and points there, so that
    one broken link gives one FAIL."""
    check = "provider-exists"
    if facts.iam_unavailable:
        return skipped(check, facts.iam_unavailable)
    if facts.provider is not None:
        return ok(check, f"{facts.provider_arn} exists")
    if facts.provider_error.startswith("NoSuchEntity"):
        near = [arn for arn in facts.provider_arns if _same_host(arn, facts.provider_arn)]
        hint = f"; the account has {', '.join(near)}" if near else ""
        evidence = f"no IAM OIDC provider {facts.provider_arn}{hint}"
        fix = f"create it for exactly {issuer} (irsa-webhook iam create-provider)"
        if near and issuer_match is not None and issuer_match.status is Status.FAIL:
            return CheckResult(
                check,
                Status.WARN,
                f"{evidence}: the spelling issuer-match names",
                NO_PROVIDER.format(issuer=issuer),
                f"fix issuer-match above: {fix}",
            )
        return CheckResult(check, Status.FAIL, evidence, NO_PROVIDER.format(issuer=issuer), fix)
    return CheckResult(
        check,
        Status.WARN,
        f"cannot read {facts.provider_arn}: {facts.provider_error}",
        "",
        "give doctor's AWS identity iam:GetOpenIDConnectProvider and iam:GetRole",
    )


def _same_host(arn: str, wanted: str) -> bool:
    def host(value: str) -> str:
        return value.partition(":oidc-provider/")[2].split("/")[0].replace(":443", "").lower()

    return arn != wanted and host(arn) == host(wanted)


def check_provider_audience(facts: AwsFacts, audience: str) -> CheckResult:
    check = "provider-audience"
    if facts.iam_unavailable:
        return skipped(check, facts.iam_unavailable)
    if facts.provider is None:
        return skipped(check, "no provider to read (see provider-exists)")
    client_ids = [str(c) for c in facts.provider.get("ClientIDList") or []]
    if audience in client_ids:
        return ok(
            check, f"the provider's client IDs {client_ids} include the token's aud {audience!r}"
        )
    return CheckResult(
        check,
        Status.FAIL,
        f"the token's aud {audience!r} is not among the provider's client IDs {client_ids}",
        INCORRECT_AUDIENCE,
        f"add {audience!r} to the provider's client IDs "
        "(aws iam add-client-id-to-open-id-connect-provider), or set the ServiceAccount's "
        "audience annotation to one of them",
    )


def check_trust_policy(facts: AwsFacts, role_arn: str, claims: Mapping[str, Any]) -> CheckResult:
    check = "trust-policy"
    if facts.iam_unavailable:
        return skipped(check, facts.iam_unavailable)
    if facts.role_error.startswith("NoSuchEntity"):
        return CheckResult(
            check,
            Status.FAIL,
            f"the role {role_arn} does not exist",
            NOT_AUTHORIZED,
            "create the role (irsa-webhook iam bind) or fix the ServiceAccount's role-arn",
        )
    if facts.trust_policy is None:
        return CheckResult(
            check,
            Status.WARN,
            f"cannot read the role {role_arn}: {facts.role_error}",
            "",
            "give doctor's AWS identity iam:GetRole",
        )
    request = WebIdentityRequest.from_claims(facts.provider_arn, claims)
    try:
        evaluation = evaluate(facts.trust_policy, request)
    except PolicyError as exc:
        return CheckResult(
            check,
            Status.FAIL,
            f"{role_arn}: {exc}",
            NOT_AUTHORIZED,
            "fix the trust policy document",
        )
    context = ", ".join(f"{key}={list(values)}" for key, values in request.context.items())
    lines = evaluation.explain()
    if not evaluation.allowed:
        return CheckResult(
            check,
            Status.FAIL,
            f"{role_arn} with {context}: " + "; ".join(lines),
            NOT_AUTHORIZED,
            "make one Allow statement's Principal.Federated the provider ARN and its conditions "
            "match the values above (irsa-webhook iam bind writes such a policy)",
        )
    if evaluation.findings:
        return CheckResult(
            check,
            Status.WARN,
            f"{role_arn}: " + "; ".join(lines),
            "",
            "tighten the trust policy as the findings say",
        )
    return ok(check, f"{role_arn} with {context}: {lines[0]}")


def check_sts_probe(
    facts: AwsFacts | None, unavailable: str = "", earlier: Sequence[CheckResult] = ()
) -> CheckResult:
    """What STS answers the pod's own call. A refusal that an earlier failed check predicted
    word for word (its ``symptom``) confirms that check and warns; one that none predicted
    fails: a link doctor does not examine is broken too."""
    check = "sts-probe"
    if facts is None or facts.sts is None:
        return skipped(check, unavailable or (facts.sts_unavailable if facts else ""))
    outcome = facts.sts
    if outcome.assumed_role_arn:
        details = [
            f"{label} {value}"
            for label, value in (
                ("SubjectFromWebIdentityToken", outcome.subject),
                ("Audience", outcome.audience),
                ("Provider", outcome.provider),
            )
            if value
        ]
        return ok(check, ", ".join([f"assumed {outcome.assumed_role_arn}", *details]))
    error = (
        f"An error occurred ({outcome.error_code}) when calling the AssumeRoleWithWebIdentity "
        f"operation: {outcome.error_message}"
    )
    answered = f"STS answered {outcome.error_code}: {outcome.error_message}"
    predicted = next(
        (r.check for r in earlier if r.status is Status.FAIL and _same_words(r.symptom, error)),
        None,
    )
    if predicted is not None:
        return CheckResult(
            check,
            Status.WARN,
            f"{answered} (as {predicted} predicted)",
            error,
            f"fix {predicted} above; this probe is what the pod's SDK does",
        )
    failed = [r.check for r in earlier if r.status is Status.FAIL]
    return CheckResult(
        check,
        Status.FAIL,
        answered,
        error,
        (
            f"no check above predicted this answer (failed: {', '.join(failed)}): "
            if failed
            else "no check above found this link broken: "
        )
        + "compare STS's message with the role, provider and token claims shown above",
    )


def _same_words(one: str, other: str) -> bool:
    return " ".join(one.split()) == " ".join(other.split())
