"""Admission warnings, each with a stable reason code.

The text of a warning is for the person who created the pod and may be reworded; the reason code
is what the warnings metric and the logs carry, so a dashboard or alert written against it keeps
working. Each code is given where its warning is made, never guessed back from the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Why a warning was returned; the values are the ``reason`` label of the warnings metric."""

    NEAR_MISS_ANNOTATION = "near-miss-annotation"
    """An annotation that looks like one of ours but is not (``eks.amazon.com/role-arn``)."""
    MISPLACED_ANNOTATION = "misplaced-annotation"
    """A pod annotation (skip-containers) set on the ServiceAccount, where it is not read."""
    ROLE_ARN_NOT_AN_ARN = "role-arn-not-an-arn"
    STS_REGIONAL_ENDPOINTS_NOT_A_BOOLEAN = "sts-regional-endpoints-not-a-boolean"
    TOKEN_EXPIRATION_NOT_A_NUMBER = "token-expiration-not-a-number"
    TOKEN_EXPIRATION_BELOW_MINIMUM = "token-expiration-below-minimum"
    TOKEN_EXPIRATION_ABOVE_MAXIMUM = "token-expiration-above-maximum"
    SKIP_CONTAINERS_MALFORMED = "skip-containers-malformed"
    SKIP_CONTAINERS_NO_SUCH_CONTAINER = "skip-containers-no-such-container"
    USER_SET_CREDENTIALS = "user-set-credentials"
    """A container sets the credential variables itself, so it gets none from us."""
    RESERVED_VOLUME_NAME = "reserved-volume-name"
    """A volume has the token volume's name but is no projected token."""
    LIVE_LOOKUP_SKIPPED = "live-lookup-skipped"
    """A cache miss got no live GET: the lookups' rate or in-flight limit was reached."""


@dataclass(frozen=True, slots=True)
class AdmissionWarning:
    """One warning: the reason code and the one-line text returned to the client."""

    reason: Reason
    message: str

    def __str__(self) -> str:
        return self.message
