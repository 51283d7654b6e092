"""The trust-policy evaluator against IAM's documented evaluation and condition semantics."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest

from irsa_webhook.aws.trust_policy import (
    PolicyError,
    WebIdentityRequest,
    evaluate,
    load_policy,
)

ISSUER = "oidc.example.com/id/ABC"
PROVIDER = f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}"
SUB = f"{ISSUER}:sub"
AUD = f"{ISSUER}:aud"
SUBJECT = "system:serviceaccount:team-a:reader"


def request(**context: str | list[str]) -> WebIdentityRequest:
    """A request whose context keys are given by claim name: sub="x" -> <issuer>:sub = x."""
    return WebIdentityRequest(
        provider_arn=PROVIDER,
        context={
            f"{ISSUER}:{claim}": value if isinstance(value, list) else [value]
            for claim, value in context.items()
        },
    )


HEALTHY = request(sub=SUBJECT, aud="sts.amazonaws.com")


def statement(
    condition: dict[str, Any] | None = None,
    effect: str = "Allow",
    action: Any = "sts:AssumeRoleWithWebIdentity",
    principal: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Effect": effect,
        "Principal": {"Federated": PROVIDER} if principal is None else principal,
        "Action": action,
        **extra,
    }
    if condition is not None:
        body["Condition"] = condition
    return body


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def eksctl_policy(subject: str = SUBJECT) -> dict[str, Any]:
    return policy(statement({"StringEquals": {SUB: subject, AUD: "sts.amazonaws.com"}}))


def codes(evaluation: Any) -> set[str]:
    return {finding.code for finding in evaluation.findings}


# --- condition operators: one row per documented rule ------------------------------------------

CONDITION_TABLE = [
    # (operator, policy values, request context, allowed)
    ("StringEquals", SUBJECT, {"sub": SUBJECT}, True),
    ("StringEquals", SUBJECT, {"sub": "system:serviceaccount:team-b:reader"}, False),
    ("StringEquals", SUBJECT.upper(), {"sub": SUBJECT}, False),  # values are case-sensitive
    ("StringEquals", [SUBJECT, "system:serviceaccount:x:y"], {"sub": SUBJECT}, True),  # OR
    ("StringEquals", "system:serviceaccount:team-a:*", {"sub": SUBJECT}, False),  # * literal
    ("StringEquals", SUBJECT, {}, False),  # a missing key makes a positive operator false
    ("StringEqualsIgnoreCase", SUBJECT.upper(), {"sub": SUBJECT}, True),
    ("StringNotEquals", "system:serviceaccount:kube-system:admin", {"sub": SUBJECT}, True),
    ("StringNotEquals", SUBJECT, {"sub": SUBJECT}, False),
    ("StringNotEquals", ["a", SUBJECT], {"sub": SUBJECT}, False),  # must match none (NOR)
    ("StringNotEquals", SUBJECT, {}, True),  # a missing key makes a negated operator true
    ("StringNotEqualsIgnoreCase", SUBJECT.upper(), {"sub": SUBJECT}, False),
    ("StringLike", "system:serviceaccount:team-a:*", {"sub": SUBJECT}, True),
    ("StringLike", "system:serviceaccount:*", {"sub": SUBJECT}, True),
    ("StringLike", "system:serviceaccount:team-?:reader", {"sub": SUBJECT}, True),
    (
        "StringLike",
        "system:serviceaccount:team-?:reader",
        {"sub": SUBJECT.replace("-a", "-ab")},
        False,
    ),
    # * also matches nothing
    ("StringLike", "system:serviceaccount:team-a:reader*", {"sub": SUBJECT}, True),
    ("StringLike", "system:serviceaccount:team-b:*", {"sub": SUBJECT}, False),
    ("StringLike", "System:ServiceAccount:*", {"sub": SUBJECT}, False),
    ("StringLike", "*", {}, False),
    ("StringNotLike", "system:serviceaccount:kube-system:*", {"sub": SUBJECT}, True),
    ("StringNotLike", "system:serviceaccount:team-a:*", {"sub": SUBJECT}, False),
    ("StringNotLike", "system:serviceaccount:*", {}, True),
    ("StringEqualsIfExists", SUBJECT, {}, True),  # IfExists: a missing key is true
    ("StringEqualsIfExists", SUBJECT, {"sub": "system:serviceaccount:x:y"}, False),
    ("StringLikeIfExists", "system:serviceaccount:team-a:*", {"sub": SUBJECT}, True),
    ("Null", "true", {}, True),  # Null true: the key must be absent
    ("Null", "true", {"sub": SUBJECT}, False),
    ("Null", "false", {"sub": SUBJECT}, True),
    ("Null", "false", {}, False),
]


@pytest.mark.parametrize(("operator", "values", "context", "allowed"), CONDITION_TABLE)
def test_a_condition_operator_decides_as_iam_documents(
    operator: str, values: str | list[str], context: dict[str, str], allowed: bool
) -> None:
    evaluation = evaluate(policy(statement({operator: {SUB: values}})), request(**context))

    assert evaluation.allowed is allowed


MULTI_VALUED_TABLE = [
    # ForAnyValue: one request value matching one policy value is enough; missing -> false.
    ("ForAnyValue:StringEquals", ["sts.amazonaws.com"], ["other", "sts.amazonaws.com"], True),
    ("ForAnyValue:StringEquals", ["sts.amazonaws.com"], ["other", "more"], False),
    ("ForAnyValue:StringEquals", ["sts.amazonaws.com"], None, False),
    ("ForAnyValue:StringLike", ["sts.*"], ["x", "sts.amazonaws.com"], True),
    ("ForAnyValue:StringNotEquals", ["sts.amazonaws.com"], ["sts.amazonaws.com", "x"], True),
    ("ForAnyValue:StringNotEquals", ["sts.amazonaws.com"], ["sts.amazonaws.com"], False),
    # ForAllValues: every request value must match some policy value; missing -> true.
    ("ForAllValues:StringEquals", ["a", "b"], ["a", "b"], True),
    ("ForAllValues:StringEquals", ["a", "b"], ["a", "c"], False),
    ("ForAllValues:StringEquals", ["a"], None, True),
    ("ForAllValues:StringNotEquals", ["a"], ["b", "c"], True),
    ("ForAllValues:StringNotEquals", ["a"], ["b", "a"], False),
    ("ForAllValues:StringLike", ["sts.*", "x"], ["sts.amazonaws.com", "x"], True),
]


@pytest.mark.parametrize(("operator", "values", "audiences", "allowed"), MULTI_VALUED_TABLE)
def test_set_operators_decide_as_iam_documents_for_multivalued_keys(
    operator: str, values: list[str], audiences: list[str] | None, allowed: bool
) -> None:
    context: dict[str, str | list[str]] = {} if audiences is None else {"aud": audiences}
    evaluation = evaluate(policy(statement({operator: {AUD: values}})), request(**context))

    assert evaluation.allowed is allowed


def test_every_key_and_every_operator_of_a_statement_must_hold() -> None:
    both = {"StringEquals": {AUD: "sts.amazonaws.com"}, "StringLike": {SUB: "system:*:team-a:*"}}

    assert evaluate(policy(statement(both)), HEALTHY).allowed
    assert not evaluate(policy(statement(both)), request(sub=SUBJECT, aud="amazonaws.com")).allowed
    assert not evaluate(eksctl_policy(), request(sub=SUBJECT)).allowed


def test_condition_key_names_are_case_insensitive_but_values_are_not() -> None:
    upper_key = policy(statement({"StringEquals": {SUB.upper(): SUBJECT}}))

    assert evaluate(upper_key, HEALTHY).allowed


def test_bool_compares_true_and_false_whatever_their_case_or_type() -> None:
    key = f"{ISSUER}:amr"
    assert evaluate(policy(statement({"Bool": {key: True}})), request(amr="True")).allowed
    assert not evaluate(policy(statement({"Bool": {key: "true"}})), request(amr="false")).allowed


# --- statements, effects, principals and actions ------------------------------------------------


def test_an_explicit_deny_wins_over_any_allow() -> None:
    deny = statement(
        {"StringLike": {SUB: "system:serviceaccount:team-a:*"}}, effect="Deny", Sid="NoTeamA"
    )
    evaluation = evaluate(policy(eksctl_policy()["Statement"][0], deny), HEALTHY)

    assert not evaluation.allowed
    assert evaluation.deciding is not None
    assert evaluation.deciding.sid == "NoTeamA"
    assert evaluation.explain()[0].startswith("denied explicitly by statement 2 (NoTeamA)")


def test_a_deny_that_does_not_apply_leaves_the_allow_in_force() -> None:
    deny = statement({"StringLike": {SUB: "system:serviceaccount:kube-system:*"}}, effect="Deny")

    assert evaluate(policy(deny, eksctl_policy()["Statement"][0]), HEALTHY).allowed


def test_any_one_of_several_allow_statements_is_enough() -> None:
    other = statement({"StringEquals": {SUB: "system:serviceaccount:team-b:writer"}})
    evaluation = evaluate(policy(other, eksctl_policy()["Statement"][0]), HEALTHY)

    assert evaluation.allowed
    assert evaluation.deciding is not None
    assert evaluation.deciding.index == 2


def test_no_matching_statement_is_an_implicit_deny_naming_each_failed_condition() -> None:
    evaluation = evaluate(eksctl_policy("system:serviceaccount:team-b:reader"), HEALTHY)

    assert not evaluation.allowed
    lines = evaluation.explain()
    assert lines[0] == "denied: no statement allows it (implicit deny)"
    assert lines[1] == (
        f"statement 1: condition StringEquals {SUB}: request {SUBJECT!r} does not match "
        "'system:serviceaccount:team-b:reader'"
    )


def test_a_statement_with_a_single_statement_object_is_read_like_a_list() -> None:
    document = {"Version": "2012-10-17", "Statement": eksctl_policy()["Statement"][0]}

    assert evaluate(document, HEALTHY).allowed


@pytest.mark.parametrize(
    ("principal", "allowed"),
    [
        ({"Federated": PROVIDER}, True),
        ({"Federated": ["arn:aws:iam::123456789012:oidc-provider/other", PROVIDER]}, True),
        ({"Federated": PROVIDER + "/"}, False),
        ({"Federated": PROVIDER.replace("123456789012", "210987654321")}, False),
        ({"Federated": "arn:aws:iam::123456789012:oidc-provider/*"}, False),  # no wildcards
        ({"AWS": "arn:aws:iam::123456789012:root"}, False),
        ({"Service": "ec2.amazonaws.com"}, False),
        ("*", True),
        ({"AWS": "*"}, True),
    ],
)
def test_the_principal_matches_only_the_exact_provider_or_everyone(
    principal: Any, allowed: bool
) -> None:
    evaluation = evaluate(policy(statement(principal=principal)), HEALTHY)

    assert evaluation.allowed is allowed


def test_not_principal_applies_to_everyone_it_does_not_list() -> None:
    body = {"Effect": "Deny", "NotPrincipal": {"Federated": PROVIDER}, "Action": "sts:*"}
    assert evaluate(policy(statement(), body), HEALTHY).allowed
    other = {**body, "NotPrincipal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/x"}}
    assert not evaluate(policy(statement(), other), HEALTHY).allowed


@pytest.mark.parametrize(
    ("action", "allowed"),
    [
        ("sts:AssumeRoleWithWebIdentity", True),
        ("STS:assumerolewithwebidentity", True),  # actions are case-insensitive
        (["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"], True),
        ("sts:AssumeRole*", True),
        ("sts:*", True),
        ("*", True),
        ("sts:AssumeRole", False),
        (["sts:AssumeRole", "sts:TagSession"], False),
        ("sts:AssumeRoleWith?ebIdentity", True),
    ],
)
def test_the_action_matches_with_iam_wildcards(action: Any, allowed: bool) -> None:
    assert evaluate(policy(statement(action=action)), HEALTHY).allowed is allowed


def test_not_action_applies_to_every_action_it_does_not_list() -> None:
    excluded = {"Effect": "Allow", "Principal": {"Federated": PROVIDER}, "NotAction": "sts:Tag*"}
    assert evaluate(policy(excluded), HEALTHY).allowed
    everything = {**excluded, "NotAction": "sts:*"}
    assert not evaluate(policy(everything), HEALTHY).allowed


# --- policy variables ---------------------------------------------------------------------------


def test_a_policy_variable_takes_the_request_value_of_its_key() -> None:
    same = {"StringEquals": {SUB: "${" + SUB + "}"}}
    assert evaluate(policy(statement(same)), HEALTHY).allowed


def test_escaped_wildcards_match_only_the_literal_character() -> None:
    literal = {"StringLike": {SUB: "system:serviceaccount:team-a:${*}"}}
    assert not evaluate(policy(statement(literal)), HEALTHY).allowed
    assert evaluate(
        policy(statement(literal)), request(sub="system:serviceaccount:team-a:*")
    ).allowed


def test_variables_are_literal_text_in_the_2008_policy_language() -> None:
    old = {"Version": "2008-10-17", "Statement": [statement({"StringEquals": {SUB: "${x}"}})]}
    assert evaluate(old, request(sub="${x}")).allowed


# --- operators not evaluated are never guessed in the caller's favour ----------------------------


def test_an_unevaluated_operator_fails_an_allow_and_holds_in_a_deny() -> None:
    dated = {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}
    allow = evaluate(policy(statement(dated)), HEALTHY)
    assert not allow.allowed
    assert "unevaluated-operator" in codes(allow)
    assert "not evaluated, assumed to not match" in allow.explain()[1]

    deny = evaluate(policy(statement(), statement(dated, effect="Deny")), HEALTHY)
    assert not deny.allowed


# --- lint findings -------------------------------------------------------------------------------


def test_a_wildcard_inside_string_equals_is_named() -> None:
    evaluation = evaluate(
        policy(statement({"StringEquals": {SUB: "system:serviceaccount:team-a:*"}})), HEALTHY
    )
    assert not evaluation.allowed
    [finding] = [f for f in evaluation.findings if f.code == "wildcard-in-string-equals"]
    assert "use StringLike" in finding.message


def test_a_subject_under_the_aud_key_is_named() -> None:
    evaluation = evaluate(policy(statement({"StringEquals": {AUD: SUBJECT}})), HEALTHY)

    assert not evaluation.allowed
    assert codes(evaluation) >= {"aud-holds-a-subject", "no-subject-condition"}
    [finding] = [f for f in evaluation.findings if f.code == "aud-holds-a-subject"]
    assert f"the key for it is {ISSUER}:sub" in finding.message


def test_an_audience_under_the_sub_key_is_named() -> None:
    evaluation = evaluate(policy(statement({"StringEquals": {SUB: "sts.amazonaws.com"}})), HEALTHY)
    assert "sub-holds-an-audience" in codes(evaluation)


@pytest.mark.parametrize(
    ("prefix", "hint"),
    [
        (f"https://{ISSUER}", "drop the scheme"),
        (f"{ISSUER}/", "drop the trailing slash"),
        ("OIDC.example.com/id/ABC", None),  # keys are case-insensitive: not a mismatch
        ("oidc.example.com:443/id/ABC", "spelled differently"),
        ("oidc.other.example/id/ABC", ""),
    ],
)
def test_a_condition_key_prefix_that_is_not_the_providers_is_named(
    prefix: str, hint: str | None
) -> None:
    document = policy(statement({"StringEquals": {f"{prefix}:sub": SUBJECT}}))
    evaluation = evaluate(document, HEALTHY)

    mismatches = [f for f in evaluation.findings if f.code == "issuer-prefix-mismatch"]
    if hint is None:
        assert evaluation.allowed
        assert mismatches == []
    else:
        assert not evaluation.allowed
        [finding] = mismatches
        assert f"IAM sets '{ISSUER}:sub'" in finding.message
        assert hint in finding.message


def test_a_federated_principal_spelled_like_the_provider_is_named() -> None:
    evaluation = evaluate(policy(statement(principal={"Federated": PROVIDER + "/"})), HEALTHY)

    assert "principal-near-miss" in codes(evaluation)
    assert evaluation.statements[0].reason == (
        f"Principal.Federated '{PROVIDER}/' is not the provider {PROVIDER}"
    )


def test_a_policy_without_the_web_identity_action_is_named() -> None:
    evaluation = evaluate(policy(statement(action="sts:AssumeRole")), HEALTHY)
    assert "no-web-identity-statement" in codes(evaluation)


def test_the_eksctl_shaped_policy_has_no_findings() -> None:
    evaluation = evaluate(eksctl_policy(), HEALTHY)

    assert evaluation.allowed
    assert evaluation.findings == ()


def test_a_policy_near_the_size_quota_is_named() -> None:
    subjects = [f"system:serviceaccount:team-{n:03}:reader" for n in range(60)]
    evaluation = evaluate(policy(statement({"StringEquals": {SUB: subjects}})), HEALTHY)
    assert "size-near-quota" in codes(evaluation)


# --- input forms and bad input -------------------------------------------------------------------


def test_the_policy_is_read_from_json_text_or_iams_url_encoded_form() -> None:
    text = json.dumps(eksctl_policy())

    assert evaluate(text, HEALTHY).allowed
    assert evaluate(urllib.parse.quote(text), HEALTHY).allowed
    assert load_policy(urllib.parse.quote(text)) == eksctl_policy()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "not JSON"),
        ("[]", "must be a JSON object"),
        ({"Version": "2012-10-17"}, "no Statement"),
        ({"Statement": []}, "no Statement"),
        ({"Statement": ["text"]}, "statement 1 is not an object"),
        (
            {"Statement": [{"Effect": "allow", "Principal": "*", "Action": "*"}]},
            "use Allow or Deny",
        ),
        ({"Statement": [{"Effect": "Allow", "Principal": 3, "Action": "*"}]}, "Principal 3"),
        ({"Statement": [statement({"StringEquals": "x"})]}, "must map keys to values"),
        ({"Statement": [statement(["x"])]}, "Condition must be an object"),  # type: ignore[arg-type]
    ],
)
def test_a_document_that_is_not_a_policy_is_a_policy_error_saying_why(
    document: Any, message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        evaluate(document, HEALTHY)


def test_a_statement_without_principal_never_applies() -> None:
    evaluation = evaluate(
        {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity"}]}, HEALTHY
    )
    assert not evaluation.allowed
    assert "no Principal" in evaluation.statements[0].reason


# --- the request built from a token's claims -----------------------------------------------------


def test_the_request_context_comes_from_the_tokens_claims() -> None:
    claims = {"iss": f"https://{ISSUER}", "sub": SUBJECT, "aud": ["sts.amazonaws.com"], "exp": 1}
    built = WebIdentityRequest.from_claims(PROVIDER, claims)

    assert built.context == {SUB: [SUBJECT], AUD: ["sts.amazonaws.com"]}
    assert built.issuer_host_path == ISSUER
    assert evaluate(eksctl_policy(), built).allowed


def test_a_string_audience_claim_is_one_value() -> None:
    built = WebIdentityRequest.from_claims(PROVIDER, {"sub": SUBJECT, "aud": "sts.amazonaws.com"})
    assert built.context[AUD] == ["sts.amazonaws.com"]
