"""One admission decision: a Pod CREATE request and its identity sources -> patch + warnings.

This is the whole webhook minus I/O; ``app`` (the server) and ``cli mutate`` (offline) both call
``decide`` so what a user debugs offline is exactly what the server answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from irsa_webhook.admission import ReviewRequest
from irsa_webhook.config import MutationSettings
from irsa_webhook.identity import (
    ConfigMapMappings,
    ContainerCredentialsConfig,
    Identity,
    ServiceAccountEntry,
    resolve_identity,
)
from irsa_webhook.mutation import RandomInt, mutate_pod
from irsa_webhook.patch import Operation
from irsa_webhook.reasons import AdmissionWarning


@dataclass(frozen=True, slots=True)
class Sources:
    """Everything known about a pod's ServiceAccount at the moment of the decision."""

    entry: ServiceAccountEntry | None
    """The ServiceAccount's cache entry; None when it was not found."""
    config_map: ConfigMapMappings
    container_credentials: ContainerCredentialsConfig


@dataclass(slots=True)
class Decision:
    outcome: str
    """mutated, unchanged, not-annotated, missing-service-account or not-a-pod-create."""
    patch: list[Operation] = field(default_factory=list)
    warnings: list[AdmissionWarning] = field(default_factory=list)
    identity: Identity | None = None
    mutated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def decide(
    request: ReviewRequest,
    sources: Sources,
    settings: MutationSettings,
    random_int: RandomInt,
) -> Decision:
    """Resolve the identity and turn it into a minimal patch for the pod."""
    if request.pod is None:
        return Decision("not-a-pod-create")
    identity = resolve_identity(
        request.namespace,
        request.service_account,
        sources.entry,
        sources.config_map,
        sources.container_credentials,
        settings,
    )
    if identity is None:
        outcome = "missing-service-account" if sources.entry is None else "not-annotated"
        warnings = list(sources.entry.warnings) if sources.entry is not None else []
        return Decision(outcome, warnings=warnings)
    result = mutate_pod(request.pod, identity, settings, random_int)
    return Decision(
        outcome="mutated" if result.patch else "unchanged",
        patch=result.patch,
        warnings=result.warnings,
        identity=identity,
        mutated=result.mutated,
        skipped=result.skipped,
    )
