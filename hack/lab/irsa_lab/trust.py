"""The role's trust policy, evaluated by the project's own evaluator (the one ``doctor`` uses
to say which condition failed), so the lab refuses exactly when ``doctor`` predicts it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from irsa_webhook.aws.trust_policy import PolicyError, WebIdentityRequest, evaluate


class IamTrustPolicy:
    """A ``TrustPolicy``: IAM's evaluation logic for the one request IRSA makes."""

    def allows(
        self, document: Mapping[str, Any] | str, provider_arn: str, claims: Mapping[str, Any]
    ) -> bool:
        try:
            request = WebIdentityRequest.from_claims(provider_arn, claims)
            return evaluate(document, request).allowed
        except PolicyError:
            # IAM would not have stored such a document; STS's answer is the same refusal.
            return False
