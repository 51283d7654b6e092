"""``irsa-webhook doctor``: walk every link of a pod's IRSA chain and name the broken one.

Checks run in order, cheap cluster-local ones first (``CHECK_IDS``). Each check is a pure
function over facts gathered at the edges (``gather`` for the API server, ``aws_side`` for AWS,
which imports boto3 only when it runs); ``report`` renders the results. Doctor is read-only: it
reads objects, mints a short token with TokenRequest and creates a pod with ``dryRun=All``, none
of which changes the cluster; on AWS it only reads IAM and calls STS unsigned.
"""

from irsa_webhook.registration import WEBHOOK_NAME

__all__ = ["CHECK_IDS", "WEBHOOK_NAME"]

CHECK_IDS = (
    "service-account",
    "pod-mutated",
    "webhook-reachable",
    "token-readable",
    "credential-shadowing",
    "issuer-discovery",
    "issuer-match",
    "jwks-kid",
    "provider-exists",
    "provider-audience",
    "trust-policy",
    "sts-probe",
)
"""Stable ids, in the order the checks run; scripts match on them."""
