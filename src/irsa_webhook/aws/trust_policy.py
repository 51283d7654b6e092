"""Evaluate a role's trust policy for ``sts:AssumeRoleWithWebIdentity``, offline, and say why.

STS answers every trust-policy failure with the same opaque ``AccessDenied: Not authorized to
perform sts:AssumeRoleWithWebIdentity``. This module applies IAM's documented evaluation logic to
the one request IRSA makes, so ``doctor`` can name the statement and the condition that failed
with the values compared, and the lab's validating STS can refuse exactly when AWS would.

Pure: no boto3, no network, no clock. The API is three names:

- ``WebIdentityRequest`` (what STS evaluates: the provider ARN, the action, the context keys;
  ``WebIdentityRequest.from_claims`` builds it from a token's claims),
- ``evaluate(policy, request) -> Evaluation`` (``allowed``, per-statement results,
  lint ``findings``, ``explain()`` lines for a human),
- ``PolicyError`` for a document that is not a policy at all.

Semantics implemented (IAM User Guide, "Policy evaluation logic", "Condition operators",
"Single-valued vs. multivalued context keys"):

- an explicit Deny in any statement wins; otherwise any Allow allows; otherwise implicit deny;
- a statement applies when its Principal (or NotPrincipal), Action (or NotAction) and every
  condition match; operators are ANDed, keys within an operator are ANDed, the policy values of
  one key are ORed (for negated operators: the request value must match none of them);
- a key missing from the request makes a condition false, except for negated operators
  (``StringNotEquals``, ``StringNotLike``...) where it is true, ``...IfExists`` where it is true,
  and ``Null`` which tests for exactly that; ``ForAllValues:`` is true and ``ForAnyValue:`` false
  on a missing key;
- condition key names are case-insensitive, values case-sensitive except ``...IgnoreCase``;
  ``StringLike`` has ``*`` (any run, also empty) and ``?`` (one character); actions are
  case-insensitive and take the same wildcards; ``Principal: "*"`` and ``{"AWS": "*"}`` match
  everyone, a Federated principal matches only the exact ARN;
- policy variables (``${...}``) in version 2012-10-17 take the request's value of that key;
  ``${*}``, ``${?}`` and ``${$}`` are the literal characters.

An operator this module does not evaluate (dates, IP addresses) is never guessed: it counts as
not matching in an Allow and as matching in a Deny, and a finding says so.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"

ROLE_POLICY_SIZE_QUOTA = 2048
"""IAM's default ``ACLSizePerRole``: trust-policy characters, whitespace not counted."""

_PROVIDER_ARN = re.compile(r"arn:aws[a-z0-9-]*:iam::\d{12}:oidc-provider/(?P<host_path>.+)")


class PolicyError(ValueError):
    """The document is not an IAM policy (not JSON, no Statement, an Effect that is neither
    Allow nor Deny). IAM itself would have refused to store it; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class WebIdentityRequest:
    """What STS evaluates the trust policy against for one AssumeRoleWithWebIdentity call."""

    provider_arn: str
    """The Federated principal: ``arn:aws:iam::<account>:oidc-provider/<host><path>``."""
    context: Mapping[str, Sequence[str]]
    """Condition keys and their values, such as ``oidc.example.com/id/ABC:sub``."""
    action: str = WEB_IDENTITY_ACTION

    @property
    def issuer_host_path(self) -> str | None:
        """The condition-key prefix IAM uses for this provider, None if the ARN is not one."""
        match = _PROVIDER_ARN.fullmatch(self.provider_arn)
        return match.group("host_path") if match else None

    @classmethod
    def from_claims(cls, provider_arn: str, claims: Mapping[str, Any]) -> WebIdentityRequest:
        """The context STS builds from a token's claims: ``<host/path>:sub``, ``:aud``, ``:amr``.

        ``aud`` may be a string or a list in a JWT; a Kubernetes token always has a list.
        """
        match = _PROVIDER_ARN.fullmatch(provider_arn)
        host_path = match.group("host_path") if match else provider_arn
        context: dict[str, list[str]] = {}
        for claim in ("sub", "aud", "amr"):
            value = claims.get(claim)
            values = value if isinstance(value, list) else [value] if value is not None else []
            strings = [str(item) for item in values]
            if strings:
                context[f"{host_path}:{claim}"] = strings
        return cls(provider_arn=provider_arn, context=context)


@dataclass(frozen=True, slots=True)
class ConditionResult:
    """One (operator, key) pair of a statement's Condition, and how it came out."""

    operator: str
    key: str
    policy_values: tuple[str, ...]
    request_values: tuple[str, ...] | None
    """The request's values for the key; None when the key is not in the request."""
    matched: bool
    evaluated: bool = True
    """False for an operator this module does not evaluate; ``matched`` is then assumed."""

    def describe(self) -> str:
        got = (
            "absent from the request" if self.request_values is None else _show(self.request_values)
        )
        verdict = "matches" if self.matched else "does not match"
        if not self.evaluated:
            verdict = "not evaluated, assumed to " + ("match" if self.matched else "not match")
        return f"{self.operator} {self.key}: request {got} {verdict} {_show(self.policy_values)}"


@dataclass(frozen=True, slots=True)
class StatementResult:
    """Whether one statement applies to the request, and the first reason it does not."""

    index: int
    """1-based, as a reader counts statements in the document."""
    sid: str | None
    effect: str
    principal_matched: bool
    action_matched: bool
    conditions: tuple[ConditionResult, ...]
    applies: bool
    reason: str
    """Why it applies or not, in one sentence with the values compared."""

    @property
    def name(self) -> str:
        return f"statement {self.index}" + (f" ({self.sid})" if self.sid else "")


@dataclass(frozen=True, slots=True)
class Finding:
    """A likely mistake in the policy, whether or not this request is affected."""

    code: str
    """Stable id: wildcard-in-string-equals, aud-holds-a-subject, sub-holds-an-audience,
    issuer-prefix-mismatch, principal-near-miss, no-web-identity-statement, no-subject-condition,
    unevaluated-operator, size-near-quota."""
    message: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The decision STS would take, and everything needed to explain it."""

    allowed: bool
    statements: tuple[StatementResult, ...]
    findings: tuple[Finding, ...] = field(default=())

    @property
    def deciding(self) -> StatementResult | None:
        """The Deny that refused, else the Allow that granted, else None (implicit deny)."""
        for wanted in ("Deny", "Allow"):
            for statement in self.statements:
                if statement.applies and statement.effect == wanted:
                    return statement
        return None

    def explain(self) -> list[str]:
        """Lines for a human: the verdict first, then each statement, then the findings."""
        deciding = self.deciding
        if deciding is None:
            lines = ["denied: no statement allows it (implicit deny)"]
        elif deciding.effect == "Deny":
            lines = [f"denied explicitly by {deciding.name}: {deciding.reason}"]
        else:
            lines = [f"allowed by {deciding.name}: {deciding.reason}"]
        lines += [f"{statement.name}: {statement.reason}" for statement in self.statements]
        lines += [f"{finding.code}: {finding.message}" for finding in self.findings]
        return lines


def load_policy(document: Mapping[str, Any] | str) -> dict[str, Any]:
    """A policy as a dict, from a dict, a JSON string, or the URL-encoded JSON IAM's API returns.

    boto3 decodes ``AssumeRolePolicyDocument`` itself; the raw Query API and the CLI's
    ``--output text`` give it percent-encoded.
    """
    if isinstance(document, Mapping):
        return dict(document)
    text = document.strip()
    if text.startswith("%7B") or text.startswith("%7b"):
        text = urllib.parse.unquote(text)
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyError(
            f"the trust policy is not JSON: {exc.msg} at character {exc.pos}"
        ) from exc
    if not isinstance(loaded, dict):
        raise PolicyError("the trust policy must be a JSON object with a Statement")
    return loaded


def evaluate(policy: Mapping[str, Any] | str, request: WebIdentityRequest) -> Evaluation:
    """Decide as IAM would whether ``request`` may assume the role with this trust policy."""
    document = load_policy(policy)
    raw_statements = document.get("Statement")
    if isinstance(raw_statements, Mapping):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        raise PolicyError("the trust policy has no Statement list")
    variables = document.get("Version") == "2012-10-17"
    context = {key.lower(): tuple(values) for key, values in request.context.items()}
    statements = tuple(
        _evaluate_statement(index, raw, request, context, variables)
        for index, raw in enumerate(raw_statements, start=1)
    )
    denied = any(s.applies and s.effect == "Deny" for s in statements)
    allowed = not denied and any(s.applies and s.effect == "Allow" for s in statements)
    return Evaluation(allowed, statements, tuple(lint(document, request)))


def _evaluate_statement(
    index: int,
    raw: Any,
    request: WebIdentityRequest,
    context: Mapping[str, tuple[str, ...]],
    variables: bool,
) -> StatementResult:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"statement {index} is not an object")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"statement {index} has Effect {effect!r}; use Allow or Deny")
    sid = raw.get("Sid") if isinstance(raw.get("Sid"), str) else None

    principal_matched, principal_reason = _principal_matches(raw, request.provider_arn)
    action_matched, action_reason = _action_matches(raw, request.action)
    conditions = _conditions(index, raw.get("Condition"), context, effect, variables)
    failed = next((c for c in conditions if not c.matched), None)

    applies = principal_matched and action_matched and failed is None
    if not principal_matched:
        reason = principal_reason
    elif not action_matched:
        reason = action_reason
    elif failed is not None:
        reason = f"condition {failed.describe()}"
    elif conditions:
        reason = (
            "principal, action and every condition match ("
            + "; ".join(c.describe() for c in conditions)
            + ")"
        )
    else:
        reason = "principal and action match and it has no conditions"
    return StatementResult(
        index, sid, effect, principal_matched, action_matched, conditions, applies, reason
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _principal_matches(raw: Mapping[str, Any], provider_arn: str) -> tuple[bool, str]:
    negated = "NotPrincipal" in raw
    principal = raw.get("NotPrincipal" if negated else "Principal")
    if principal is None:
        return False, "it has no Principal, so it never applies to a federated caller"
    if principal == "*":
        listed = True
        names = ["*"]
    elif isinstance(principal, Mapping):
        federated = [str(v) for v in _as_list(principal.get("Federated", []))]
        everyone = "*" in [str(v) for v in _as_list(principal.get("AWS", []))]
        listed = everyone or provider_arn in federated
        names = federated + (["AWS:*"] if everyone else [])
    else:
        raise PolicyError(f'Principal {principal!r} must be "*" or an object')
    if negated:
        if listed:
            return False, f"NotPrincipal lists the provider {provider_arn}"
        return True, "NotPrincipal does not list the provider"
    if listed:
        return True, "the principal matches"
    shown = _show(tuple(names)) if names else "no Federated principal"
    return False, f"Principal.Federated {shown} is not the provider {provider_arn}"


def _action_matches(raw: Mapping[str, Any], action: str) -> tuple[bool, str]:
    negated = "NotAction" in raw
    patterns = [str(p) for p in _as_list(raw.get("NotAction" if negated else "Action", []))]
    hit = any(_like(action.lower(), pattern.lower()) for pattern in patterns)
    if negated:
        return (not hit), (
            f"NotAction {_show(tuple(patterns))} excludes {action}" if hit else "action matches"
        )
    if hit:
        return True, "action matches"
    return False, f"Action {_show(tuple(patterns))} does not include {action}"


_STRING_OPERATORS = {
    "StringEquals": (False, False, False),
    "StringNotEquals": (True, False, False),
    "StringEqualsIgnoreCase": (False, True, False),
    "StringNotEqualsIgnoreCase": (True, True, False),
    "StringLike": (False, False, True),
    "StringNotLike": (True, False, True),
    # IAM documents ArnEquals and ArnLike as the same wildcard match.
    "ArnEquals": (False, False, True),
    "ArnLike": (False, False, True),
    "ArnNotEquals": (True, False, True),
    "ArnNotLike": (True, False, True),
}
"""operator -> (negated, ignore case, wildcards)."""


def _conditions(
    index: int,
    raw: Any,
    context: Mapping[str, tuple[str, ...]],
    effect: str,
    variables: bool,
) -> tuple[ConditionResult, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise PolicyError(f"statement {index} Condition must be an object")
    results: list[ConditionResult] = []
    for operator, keys in raw.items():
        if not isinstance(keys, Mapping):
            raise PolicyError(f"statement {index} condition {operator} must map keys to values")
        for key, values in keys.items():
            policy_values = tuple(
                str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(values)
            )
            request_values = context.get(str(key).lower())
            outcome = _condition(operator, policy_values, request_values, context, variables)
            if outcome is None:
                results.append(
                    ConditionResult(
                        operator,
                        key,
                        policy_values,
                        request_values,
                        matched=effect == "Deny",
                        evaluated=False,
                    )
                )
            else:
                results.append(
                    ConditionResult(operator, key, policy_values, request_values, outcome)
                )
    return tuple(results)


def _condition(
    operator: str,
    policy_values: tuple[str, ...],
    request_values: tuple[str, ...] | None,
    context: Mapping[str, tuple[str, ...]],
    variables: bool,
) -> bool | None:
    """True/False as IAM decides; None for an operator not evaluated here."""
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    if base == "Null":
        wants_absent = [v.lower() == "true" for v in policy_values]
        return any((request_values is None) == absent for absent in wants_absent)
    if base == "Bool":
        base, policy_values = "StringEqualsIgnoreCase", tuple(v.lower() for v in policy_values)
    spec = _STRING_OPERATORS.get(base)
    if spec is None or qualifier not in ("", "ForAnyValue", "ForAllValues"):
        return None
    negated, ignore_case, wildcards = spec
    if request_values is None:
        if if_exists:
            return True
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return negated
    if variables:
        policy_values = tuple(_substitute(v, context) for v in policy_values)

    def matches_one(value: str) -> bool:
        candidates = list(policy_values) if wildcards else [_unmark(p) for p in policy_values]
        if ignore_case:
            value = value.lower()
            candidates = [p.lower() for p in candidates]
        if wildcards:
            return any(_like(value, pattern) for pattern in candidates)
        return value in candidates

    # A negated operator is true for a value that matches none of the policy values.
    def holds(value: str) -> bool:
        return not matches_one(value) if negated else matches_one(value)

    if qualifier == "ForAllValues":
        return all(holds(value) for value in request_values)
    if qualifier == "ForAnyValue":
        return any(holds(value) for value in request_values)
    # A single-valued operator on several request values: positive operators need one match,
    # negated ones need every value to miss (IAM warns this mix is rarely what was meant).
    if negated:
        return all(holds(value) for value in request_values)
    return any(holds(value) for value in request_values)


_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_LITERALS = {"*": "\x00star\x00", "?": "\x00question\x00", "$": "$"}


def _substitute(value: str, context: Mapping[str, tuple[str, ...]]) -> str:
    """Replace ``${key}`` with the request's value; a missing key leaves a value nothing matches.

    ``${*}`` and ``${?}`` stand for the literal characters; they are kept as markers that
    ``_like`` reads as literals.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in _LITERALS:
            return _LITERALS[name]
        values = context.get(name.lower())
        return values[0] if values and len(values) == 1 else "\x00unset\x00"

    return _VARIABLE.sub(replace, value)


def _like(value: str, pattern: str) -> bool:
    """IAM's wildcard match: ``*`` any run of characters (also none), ``?`` exactly one."""
    regex = []
    for part in re.split(r"(\x00star\x00|\x00question\x00|\*|\?)", pattern):
        if part == "*":
            regex.append(".*")
        elif part == "?":
            regex.append(".")
        elif part == "\x00star\x00":
            regex.append(re.escape("*"))
        elif part == "\x00question\x00":
            regex.append(re.escape("?"))
        else:
            regex.append(re.escape(part))
    return re.fullmatch("".join(regex), value, flags=re.DOTALL) is not None


def _unmark(value: str) -> str:
    return value.replace("\x00star\x00", "*").replace("\x00question\x00", "?")


def _show(values: tuple[str, ...]) -> str:
    shown = [v.replace("\x00star\x00", "${*}").replace("\x00question\x00", "${?}") for v in values]
    return repr(shown[0]) if len(shown) == 1 else "[" + ", ".join(repr(v) for v in shown) + "]"


# --- lint: mistakes worth naming even when this request is not the one they break -------------

_SUBJECT = re.compile(r"system:serviceaccount:")
_CLAIM_KEY = re.compile(r"(?P<prefix>.*):(?P<claim>sub|aud|amr|azp|oaud|email)", re.IGNORECASE)


def lint(policy: Mapping[str, Any], request: WebIdentityRequest) -> list[Finding]:
    """Findings for the mistakes users make most in IRSA trust policies."""
    findings: list[Finding] = []
    expected_prefix = request.issuer_host_path
    statements = policy.get("Statement")
    statements = [statements] if isinstance(statements, Mapping) else statements or []
    audiences = {
        value
        for key, values in request.context.items()
        if key.lower().endswith(":aud")
        for value in values
    }
    web_identity = False
    for index, statement in enumerate(statements, start=1):
        if not isinstance(statement, Mapping):
            continue
        name = f"statement {index}"
        actions = [str(a) for a in _as_list(statement.get("Action", []))]
        grants = statement.get("Effect") == "Allow" and any(
            _like(request.action.lower(), a.lower()) for a in actions
        )
        web_identity = web_identity or grants
        principal = statement.get("Principal")
        if isinstance(principal, Mapping):
            for arn in (str(v) for v in _as_list(principal.get("Federated", []))):
                if arn != request.provider_arn and _near(arn, request.provider_arn):
                    findings.append(
                        Finding(
                            "principal-near-miss",
                            f"{name} Principal.Federated {arn!r} differs from the provider "
                            f"{request.provider_arn!r} only by a scheme, port, slash or case",
                        )
                    )
        conditions = statement.get("Condition")
        has_subject = False
        for operator, keys in conditions.items() if isinstance(conditions, Mapping) else ():
            if not isinstance(keys, Mapping):
                continue
            base = operator.rpartition(":")[2].removesuffix("IfExists")
            for key, values in keys.items():
                texts = [str(v) for v in _as_list(values)]
                claim = _CLAIM_KEY.fullmatch(str(key))
                if claim and claim.group("claim").lower() == "sub":
                    has_subject = True
                if base in ("StringEquals", "StringEqualsIgnoreCase") and any(
                    "*" in t or "?" in t for t in texts
                ):
                    findings.append(
                        Finding(
                            "wildcard-in-string-equals",
                            f"{name} {operator} {key} has {_show(tuple(texts))}: StringEquals "
                            "compares * and ? literally; use StringLike for a pattern",
                        )
                    )
                if claim is None:
                    continue
                if claim.group("claim").lower() == "aud" and any(_SUBJECT.match(t) for t in texts):
                    findings.append(
                        Finding(
                            "aud-holds-a-subject",
                            f"{name} {operator} {key} holds a ServiceAccount subject "
                            f"{_show(tuple(texts))}; the key for it is "
                            f"{claim.group('prefix')}:sub",
                        )
                    )
                if claim.group("claim").lower() == "sub" and any(
                    t in audiences or t.endswith("amazonaws.com") for t in texts
                ):
                    findings.append(
                        Finding(
                            "sub-holds-an-audience",
                            f"{name} {operator} {key} holds {_show(tuple(texts))}, which is not "
                            "system:serviceaccount:<namespace>:<name>; an audience belongs under "
                            f"{claim.group('prefix')}:aud",
                        )
                    )
                prefix = claim.group("prefix")
                if expected_prefix is not None and prefix.lower() != expected_prefix.lower():
                    findings.append(
                        Finding(
                            "issuer-prefix-mismatch",
                            f"{name} condition key {key!r} starts with {prefix!r}; for this "
                            f"provider IAM sets {expected_prefix + ':' + claim.group('claim')!r}"
                            + _prefix_hint(prefix, expected_prefix),
                        )
                    )
            if base not in _STRING_OPERATORS and base not in ("Null", "Bool"):
                findings.append(
                    Finding(
                        "unevaluated-operator",
                        f"{name} uses {operator}, which doctor does not evaluate; it is assumed "
                        "to fail in an Allow and to hold in a Deny",
                    )
                )
        if grants and not has_subject:
            findings.append(
                Finding(
                    "no-subject-condition",
                    f"{name} allows {request.action} without a condition on the :sub key, so every "
                    "ServiceAccount of the cluster can assume the role",
                )
            )
    if not web_identity:
        findings.append(
            Finding(
                "no-web-identity-statement",
                f"no Allow statement names {request.action}; IRSA needs exactly that action",
            )
        )
    size = len(re.sub(r"\s", "", json.dumps(policy, separators=(",", ":"))))
    if size > ROLE_POLICY_SIZE_QUOTA * 0.9:
        findings.append(
            Finding(
                "size-near-quota",
                f"the trust policy is {size} characters, near IAM's default quota of "
                f"{ROLE_POLICY_SIZE_QUOTA}; one role per ServiceAccount keeps it small",
            )
        )
    return findings


def _canonical_issuer(text: str) -> str:
    text = text.lower().removeprefix("https://").removeprefix("http://")
    return text.replace(":443", "").rstrip("/")


def _near(arn: str, provider_arn: str) -> bool:
    head, _, host_path = arn.partition(":oidc-provider/")
    want_head, _, want_host_path = provider_arn.partition(":oidc-provider/")
    return head.lower() == want_head.lower() and _canonical_issuer(host_path) == _canonical_issuer(
        want_host_path
    )


def _prefix_hint(prefix: str, expected: str) -> str:
    if prefix.lower().startswith(("https://", "http://")):
        return " (drop the scheme: condition keys have none)"
    if prefix.rstrip("/") == expected.rstrip("/") and prefix.endswith("/"):
        return " (drop the trailing slash)"
    if _canonical_issuer(prefix) == _canonical_issuer(expected):
        return " (same issuer spelled differently: keys must match byte for byte)"
    return ""
