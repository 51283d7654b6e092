"""doctor's issuer, webhook and AWS checks as pure functions of what was read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa

from irsa_webhook.doctor.aws_checks import (
    AwsFacts,
    StsOutcome,
    check_provider_audience,
    check_provider_exists,
    check_sts_probe,
    check_trust_policy,
    provider_arn_for,
)
from irsa_webhook.doctor.facts import Fetched, TlsProbe
from irsa_webhook.doctor.gather import decode_unverified
from irsa_webhook.doctor.issuer_checks import (
    check_issuer_discovery,
    check_issuer_match,
    check_jwks_kid,
)
from irsa_webhook.doctor.report import CheckResult, Status, render_json, render_text
from irsa_webhook.doctor.webhook_check import WebhookFacts, check_webhook_reachable
from irsa_webhook.registration import WebhookRegistration

ISSUER = "https://oidc.example.com/id/ABC"
ROLE = "arn:aws:iam::123456789012:role/reader"
PROVIDER = "arn:aws:iam::123456789012:oidc-provider/oidc.example.com/id/ABC"
SUBJECT = "system:serviceaccount:team-a:reader"
CLAIMS = {"iss": ISSUER, "sub": SUBJECT, "aud": ["sts.amazonaws.com"]}


# --- issuer-discovery ----------------------------------------------------------------------------


def discovery(jwks_uri: str = f"{ISSUER}/keys.json") -> Fetched:
    return Fetched(
        f"{ISSUER}/.well-known/openid-configuration",
        {"issuer": ISSUER, "jwks_uri": jwks_uri},
        content_type="application/json",
        elapsed=0.02,
    )


JWKS = Fetched(f"{ISSUER}/keys.json", {"keys": [{"kid": "a"}]}, content_type="application/json")


@pytest.mark.parametrize(
    ("cluster", "public", "jwks", "status", "evidence"),
    [
        ({"issuer": ISSUER}, discovery(), JWKS, Status.OK, "(1 key(s)) read anonymously"),
        (None, None, None, Status.FAIL, "serves no /.well-known/openid-configuration"),
        ({"issuer": "http://x"}, None, None, Status.FAIL, "is not https"),
        (
            {"issuer": ISSUER},
            Fetched("u", error="answered HTTP 403 to an anonymous GET"),
            None,
            Status.FAIL,
            "HTTP 403",
        ),
        (
            {"issuer": ISSUER},
            discovery("http://internal/keys"),
            None,
            Status.FAIL,
            "jwks_uri 'http://internal/keys' is not https",
        ),
        (
            {"issuer": ISSUER},
            discovery(),
            Fetched("k", error="redirects to 'x'"),
            Status.FAIL,
            "redirects",
        ),
        (
            {"issuer": ISSUER},
            discovery(),
            Fetched("k", {"keys": []}, content_type="application/json"),
            Status.FAIL,
            "holds no keys",
        ),
        (
            {"issuer": ISSUER},
            discovery(),
            Fetched("k", {"keys": [{}]}, content_type="binary/octet-stream"),
            Status.WARN,
            "not served as application/json: k",
        ),
    ],
)
def test_issuer_discovery_reads_what_sts_reads(
    cluster: dict[str, Any] | None,
    public: Fetched | None,
    jwks: Fetched | None,
    status: Status,
    evidence: str,
) -> None:
    result = check_issuer_discovery(cluster, "", public, jwks)

    assert result.status is status
    assert evidence in result.evidence
    if status is Status.FAIL:
        assert "Couldn't retrieve verification key" in result.symptom


# --- issuer-match --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("other", "hint"),
    [
        (ISSUER + "/", "a trailing slash differs"),
        ("https://oidc.example.com:443/id/ABC", "one has :443"),
        ("https://OIDC.example.com/id/ABC", "case differs"),
        ("http://oidc.example.com/id/ABC", "the scheme differs"),
    ],
)
def test_issuer_match_is_byte_for_byte_and_names_the_difference(other: str, hint: str) -> None:
    result = check_issuer_match(
        ISSUER, [("the discovery issuer", ISSUER), ("the IAM provider URL", other)]
    )

    assert result.status is Status.FAIL
    assert f"the IAM provider URL {other!r} ({hint})" in result.evidence
    assert f"No OpenIDConnect provider found in your account for {ISSUER}" in result.symptom


def test_issuer_match_says_what_it_could_not_compare() -> None:
    result = check_issuer_match(
        ISSUER, [("the discovery issuer", ISSUER), ("IAM (no credentials)", None)]
    )

    assert result.status is Status.OK
    assert result.evidence.endswith("not compared: IAM (no credentials)")


# --- jwks-kid -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed() -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A token signed by one key, that key's public JWK, and a JWK of another key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(CLAIMS, key, algorithm="RS256", headers={"kid": "current"})
    good = {**jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "current"}
    bad = {**jwt.algorithms.RSAAlgorithm.to_jwk(other.public_key(), as_dict=True), "kid": "current"}
    return token, good, bad


def test_jwks_kid_passes_when_the_published_key_verifies_the_token(signed: Any) -> None:
    token, good, _ = signed
    header, _ = decode_unverified(token)

    result = check_jwks_kid(token, header, {"keys": [good]}, {"keys": [good]})

    assert result.status is Status.OK
    assert result.evidence == "kid 'current' (RS256) is in the public JWKS and verifies the token"


def test_jwks_kid_fails_when_the_kid_is_not_published(signed: Any) -> None:
    token, good, _ = signed
    header, _ = decode_unverified(token)

    result = check_jwks_kid(token, header, {"keys": [{**good, "kid": "old"}]}, None)

    assert result.status is Status.FAIL
    assert "kid 'current' is not in the public JWKS (kids: 'old')" in result.evidence
    assert "Couldn't retrieve verification key" in result.symptom


def test_jwks_kid_fails_when_the_kid_is_published_with_another_key(signed: Any) -> None:
    token, _, bad = signed
    header, _ = decode_unverified(token)

    result = check_jwks_kid(token, header, {"keys": [bad]}, None)

    assert result.status is Status.FAIL
    assert "does not verify the token" in result.evidence


def test_jwks_kid_warns_of_keys_the_api_server_has_but_did_not_publish(signed: Any) -> None:
    token, good, _ = signed
    header, _ = decode_unverified(token)

    result = check_jwks_kid(token, header, {"keys": [good]}, {"keys": [good, {"kid": "next"}]})

    assert result.status is Status.WARN
    assert "not published: next" in result.evidence


def test_jwks_kid_fails_an_algorithm_sts_does_not_accept() -> None:
    result = check_jwks_kid("a.b.c", {"alg": "HS256", "kid": "k"}, {"keys": []}, None)
    assert result.status is Status.FAIL


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c", "e30.W10.x"])
def test_a_token_that_is_not_a_jwt_is_a_value_error(token: str) -> None:
    with pytest.raises(ValueError, match="JWT"):
        decode_unverified(token)


# --- webhook-reachable ----------------------------------------------------------------------------

IGNORE = WebhookRegistration("pod-identity-webhook.amazonaws.com", "Ignore", None, None)
FAIL = WebhookRegistration("pod-identity-webhook.amazonaws.com", "Fail", None, None)
VERIFIED = TlsProbe("10.0.0.5:8443", True, "valid until Jan  1 00:00:00 2030 GMT")


@pytest.mark.parametrize(
    ("facts", "status", "evidence"),
    [
        (
            WebhookFacts(IGNORE, "svc", (("10.0.0.5", 8443),), VERIFIED, dry_run="mutated"),
            Status.OK,
            "a dry-run pod was mutated",
        ),
        (WebhookFacts(None), Status.FAIL, "no MutatingWebhookConfiguration"),
        (WebhookFacts(FAIL, "svc", ()), Status.FAIL, "no ready endpoints"),
        (
            WebhookFacts(
                FAIL,
                "https://127.0.0.1:1/mutate",
                None,
                TlsProbe("127.0.0.1:1", False, "ConnectionRefusedError", reachable=False),
            ),
            Status.FAIL,
            "cannot connect",
        ),
        (
            WebhookFacts(
                FAIL,
                "svc",
                (("10.0.0.5", 8443),),
                TlsProbe("10.0.0.5:8443", False, "the caBundle does not verify it: x"),
            ),
            Status.FAIL,
            "does not verify",
        ),
        (
            WebhookFacts(
                IGNORE,
                "svc",
                (("10.0.0.5", 8443),),
                TlsProbe("10.0.0.5:8443", False, "timed out", reachable=False),
                dry_run="not-mutated",
            ),
            Status.FAIL,
            "serving certificate not checked from here",
        ),
        (
            WebhookFacts(
                FAIL,
                "svc",
                (("10.0.0.5", 8443),),
                VERIFIED,
                dry_run="refused: failed calling webhook",
            ),
            Status.FAIL,
            "dry-run pod refused",
        ),
        (
            WebhookFacts(FAIL, "svc", (("10.0.0.5", 8443),), VERIFIED, dry_run="forbidden: no"),
            Status.WARN,
            "dry-run forbidden",
        ),
        (
            WebhookFacts(FAIL, "svc", (("10.0.0.5", 8443),), VERIFIED, dry_run="skipped: no role"),
            Status.OK,
            "dry-run skipped",
        ),
        (
            WebhookFacts(None, problem="cannot read MutatingWebhookConfigurations: 403"),
            Status.WARN,
            "403",
        ),
    ],
)
def test_webhook_reachable_names_the_first_broken_part(
    facts: WebhookFacts, status: Status, evidence: str
) -> None:
    result = check_webhook_reachable(facts)

    assert result.status is status, result.evidence
    assert evidence in result.evidence


def test_webhook_reachable_fails_an_expired_ca_bundle() -> None:
    ca = trustme.CA()
    facts = WebhookFacts(
        FAIL, "svc", (("10.0.0.5", 8443),), VERIFIED, ca.cert_pem.bytes().decode(), "mutated"
    )
    later = datetime(3000, 1, 2, tzinfo=UTC)  # trustme CAs expire at the start of 3000

    assert check_webhook_reachable(facts).status is Status.OK
    expired = check_webhook_reachable(facts, now=later)
    assert expired.status is Status.FAIL
    assert "caBundle's CA expired" in expired.evidence


def test_the_symptom_follows_the_failure_policy() -> None:
    refused = check_webhook_reachable(WebhookFacts(FAIL, "svc", ()))
    silent = check_webhook_reachable(WebhookFacts(IGNORE, "svc", ()))

    assert 'failed calling webhook "pod-identity-webhook.amazonaws.com"' in refused.symptom
    assert "failurePolicy Ignore" in silent.symptom


# --- the AWS side --------------------------------------------------------------------------------

TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Federated": PROVIDER},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    "oidc.example.com/id/ABC:sub": SUBJECT,
                    "oidc.example.com/id/ABC:aud": "sts.amazonaws.com",
                }
            },
        }
    ],
}
HEALTHY = AwsFacts(
    provider_arn=PROVIDER,
    provider={"Url": "oidc.example.com/id/ABC", "ClientIDList": ["sts.amazonaws.com"]},
    trust_policy=TRUST,
    sts=StsOutcome(assumed_role_arn="arn:aws:sts::123456789012:assumed-role/reader/doctor"),
)


def test_the_provider_arn_is_the_issuer_without_its_scheme_in_the_roles_account() -> None:
    assert provider_arn_for(ROLE, ISSUER) == PROVIDER
    assert provider_arn_for("arn:aws-cn:iam::210987654321:role/x", ISSUER).startswith(
        "arn:aws-cn:iam::210987654321:oidc-provider/"
    )


def test_a_healthy_aws_side_passes_every_check() -> None:
    results = [
        check_provider_exists(HEALTHY, ISSUER),
        check_provider_audience(HEALTHY, "sts.amazonaws.com"),
        check_trust_policy(HEALTHY, ROLE, CLAIMS),
        check_sts_probe(HEALTHY),
    ]
    assert [r.status for r in results] == [Status.OK] * 4
    assert "assumed arn:aws:sts::123456789012:assumed-role/reader/doctor" in results[3].evidence


def test_aws_checks_are_skipped_with_the_reason_when_aws_is_not_configured() -> None:
    facts = AwsFacts(iam_unavailable="no AWS credentials", sts_unavailable="no region")
    for result in (
        check_provider_exists(facts, ISSUER),
        check_provider_audience(facts, "sts.amazonaws.com"),
        check_trust_policy(facts, ROLE, CLAIMS),
    ):
        assert result == CheckResult(result.check, Status.SKIPPED, "no AWS credentials")
    assert check_sts_probe(facts).evidence == "no region"


def test_a_missing_provider_names_a_near_miss_in_the_account() -> None:
    facts = AwsFacts(
        provider_arn=PROVIDER,
        provider_error="NoSuchEntity: not found",
        provider_arns=(PROVIDER + "/", "arn:aws:iam::123456789012:oidc-provider/other.example"),
    )
    result = check_provider_exists(facts, ISSUER)

    assert result.status is Status.FAIL
    assert result.evidence == f"no IAM OIDC provider {PROVIDER}; the account has {PROVIDER}/"
    assert check_provider_audience(facts, "sts.amazonaws.com").status is Status.SKIPPED


def test_a_near_miss_that_issuer_match_already_failed_on_warns_and_points_there() -> None:
    facts = AwsFacts(
        provider_arn=PROVIDER,
        provider_error="NoSuchEntity: not found",
        provider_arns=(PROVIDER + "/",),
    )
    mismatch = CheckResult("issuer-match", Status.FAIL, "token iss differs", "", "")

    result = check_provider_exists(facts, ISSUER, mismatch)

    assert result.status is Status.WARN
    assert result.evidence.endswith(
        "the account has " + PROVIDER + "/: the spelling issuer-match names"
    )
    assert result.fix.startswith("fix issuer-match above")
    # Without a near miss, or with issuer-match passing, the provider is simply missing.
    alone = AwsFacts(provider_arn=PROVIDER, provider_error="NoSuchEntity: not found")
    assert check_provider_exists(alone, ISSUER, mismatch).status is Status.FAIL
    passing = CheckResult("issuer-match", Status.OK, "token iss = ...")
    assert check_provider_exists(facts, ISSUER, passing).status is Status.FAIL


def test_an_audience_the_provider_does_not_list_is_incorrect_token_audience() -> None:
    facts = AwsFacts(provider_arn=PROVIDER, provider={"ClientIDList": ["amazonaws.com"]})
    result = check_provider_audience(facts, "sts.amazonaws.com")

    assert result.status is Status.FAIL
    assert "Incorrect token audience" in result.symptom


def test_a_trust_policy_for_another_namespace_fails_with_the_condition_and_values() -> None:
    claims = {**CLAIMS, "sub": "system:serviceaccount:team-b:reader"}
    result = check_trust_policy(HEALTHY, ROLE, claims)

    assert result.status is Status.FAIL
    assert "request 'system:serviceaccount:team-b:reader' does not match" in result.evidence
    assert "Not authorized to perform sts:AssumeRoleWithWebIdentity" in result.symptom


def test_a_missing_role_fails_trust_policy() -> None:
    facts = AwsFacts(provider_arn=PROVIDER, role_error="NoSuchEntity: no role")
    assert "does not exist" in check_trust_policy(facts, ROLE, CLAIMS).evidence


def test_sts_errors_are_shown_as_the_sdk_prints_them() -> None:
    facts = AwsFacts(
        sts=StsOutcome(error_code="InvalidIdentityToken", error_message="Incorrect token audience")
    )
    result = check_sts_probe(facts)

    assert result.status is Status.FAIL
    assert result.symptom == (
        "An error occurred (InvalidIdentityToken) when calling the AssumeRoleWithWebIdentity "
        "operation: Incorrect token audience"
    )


def test_a_refusal_an_earlier_failure_predicted_word_for_word_warns_and_names_it() -> None:
    facts = AwsFacts(
        sts=StsOutcome(
            error_code="AccessDenied",
            error_message="Not authorized to perform sts:AssumeRoleWithWebIdentity",
        )
    )
    trust = check_trust_policy(HEALTHY, ROLE, {**CLAIMS, "sub": "system:serviceaccount:b:x"})
    assert trust.status is Status.FAIL

    result = check_sts_probe(facts, earlier=[check_provider_exists(HEALTHY, ISSUER), trust])

    assert result.status is Status.WARN
    assert result.evidence == (
        "STS answered AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity "
        "(as trust-policy predicted)"
    )
    assert result.fix.startswith("fix trust-policy above")


def test_a_refusal_no_earlier_check_predicted_fails_and_says_so() -> None:
    facts = AwsFacts(
        sts=StsOutcome(error_code="InvalidIdentityToken", error_message="Incorrect token audience")
    )
    trust = check_trust_policy(HEALTHY, ROLE, {**CLAIMS, "sub": "system:serviceaccount:b:x"})
    result = check_sts_probe(facts, earlier=[trust])

    assert result.status is Status.FAIL
    assert "no check above predicted this answer (failed: trust-policy)" in result.fix
    # A warning with the same symptom predicts nothing: only a failed check does.
    warned = CheckResult("provider-audience", Status.WARN, "", result.symptom, "")
    assert check_sts_probe(facts, earlier=[warned]).status is Status.FAIL


def test_reports_render_as_text_lines_and_as_json_objects() -> None:
    results = [
        CheckResult("service-account", Status.OK, "fine"),
        CheckResult("pod-mutated", Status.FAIL, "missing", "NoCredentialsError", "restart it"),
    ]
    text = render_text("pod a/b", results)
    assert text.splitlines() == [
        "doctor pod a/b",
        "ok      service-account  fine",
        "FAIL    pod-mutated      missing",
        "                         pod sees: NoCredentialsError",
        "                         fix: restart it",
        "failed: pod-mutated",
    ]
    assert '"status": "fail"' in render_json(results)
