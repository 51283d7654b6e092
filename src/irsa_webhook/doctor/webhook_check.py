"""webhook-reachable: the API server can call the webhook now, and it mutates a pod."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509

from irsa_webhook.doctor.facts import TlsProbe
from irsa_webhook.doctor.pod_checks import NO_CREDENTIALS
from irsa_webhook.doctor.report import CheckResult, Status, ok
from irsa_webhook.registration import WebhookRegistration


@dataclass(frozen=True, slots=True)
class WebhookFacts:
    """What doctor found about the registered webhook; ``problem`` when it could not look."""

    registration: WebhookRegistration | None
    target: str = ""
    """``service <ns>/<name>:<port>`` or the configured URL."""
    endpoints: tuple[tuple[str, int], ...] | None = None
    """Ready endpoints of the Service; None for a URL-configured webhook."""
    tls: TlsProbe | None = None
    ca_pem: str = ""
    dry_run: str = ""
    """mutated, not-mutated, refused: <message>, forbidden: <message>, or skipped: <why>."""
    problem: str = ""


def ca_expiry_problem(ca_pem: str, now: datetime) -> str:
    """Why the caBundle cannot verify anything (unparsable, expired), or ``""``."""
    if not ca_pem.strip():
        return ""
    try:
        certificates = x509.load_pem_x509_certificates(ca_pem.encode())
    except ValueError as exc:
        return f"the caBundle is not PEM certificates: {exc}"
    expired = [c for c in certificates if c.not_valid_after_utc < now]
    if expired and len(expired) == len(certificates):
        return f"the caBundle's CA expired at {expired[0].not_valid_after_utc.isoformat()}"
    return ""


def check_webhook_reachable(facts: WebhookFacts, now: datetime | None = None) -> CheckResult:
    check = "webhook-reachable"
    if facts.problem:
        return CheckResult(
            check, Status.WARN, facts.problem, "", "run doctor with rights to read it"
        )
    registration = facts.registration
    if registration is None:
        return CheckResult(
            check,
            Status.FAIL,
            "no MutatingWebhookConfiguration registers the webhook",
            NO_CREDENTIALS,
            "install the webhook: helm install irsa-webhook charts/irsa-webhook",
        )
    symptom = (
        "pod creation is refused: Internal error occurred: failed calling webhook "
        f'"{registration.name}": failed to call webhook: ...'
        if registration.failure_policy == "Fail"
        else f"pods are created without credentials (failurePolicy Ignore): {NO_CREDENTIALS}"
    )
    seen = [f"{registration.name} -> {facts.target}"]
    if facts.endpoints is not None:
        if not facts.endpoints:
            return CheckResult(
                check,
                Status.FAIL,
                f"{seen[0]}: the Service has no ready endpoints",
                symptom,
                "start the webhook's pods (kubectl get pods -n <namespace>) and fix what keeps "
                "them unready",
            )
        seen.append(f"{len(facts.endpoints)} ready endpoint(s)")
    expiry = ca_expiry_problem(facts.ca_pem, now or datetime.now(UTC))
    if expiry:
        return CheckResult(
            check, Status.FAIL, f"{seen[0]}: {expiry}", symptom, "renew the CA and its caBundle"
        )
    tls = facts.tls
    if tls is not None:
        if tls.verified:
            seen.append(
                f"serving certificate at {tls.address} verified by the caBundle, {tls.detail}"
            )
        elif tls.reachable:
            return CheckResult(
                check,
                Status.FAIL,
                f"{seen[0]}: serving certificate at {tls.address}: {tls.detail}",
                symptom,
                "make the caBundle the CA that signed the serving certificate (the chart does so)",
            )
        elif facts.endpoints is None:
            return CheckResult(
                check,
                Status.FAIL,
                f"{seen[0]}: cannot connect: {tls.detail}",
                symptom,
                "start the webhook at the configured URL, or point the configuration at it",
            )
        else:
            seen.append(f"serving certificate not checked from here ({tls.detail})")
    dry_run = facts.dry_run
    if dry_run == "mutated":
        return ok(check, "; ".join([*seen, "a dry-run pod was mutated"]))
    if dry_run.startswith("refused"):
        return CheckResult(
            check,
            Status.FAIL,
            "; ".join([*seen, f"dry-run pod {dry_run}"]),
            symptom,
            "make the webhook reachable from the API server (its log and Service say why not)",
        )
    if dry_run == "not-mutated":
        return CheckResult(
            check,
            Status.FAIL,
            "; ".join([*seen, "a dry-run pod was created without credentials"]),
            symptom,
            "make the webhook reachable from the API server; with failurePolicy Ignore every "
            "failed call is silent",
        )
    evidence = "; ".join([*seen, f"dry-run {dry_run}"])
    if dry_run.startswith("skipped") and tls is not None and tls.verified:
        return ok(check, evidence)
    return CheckResult(
        check,
        Status.WARN,
        evidence,
        symptom,
        "run doctor as a user who may create pods with dryRun=All to prove the webhook answers",
    )
