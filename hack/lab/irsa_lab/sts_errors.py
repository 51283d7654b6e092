"""STS's own error answers, as AWS's STS words and encodes them.

Every refusal of the validating STS is one of these, so a pod (or ``doctor``, or a test) sees
the same code, HTTP status and message it would see from AWS. The message texts are the ones
users report from the real service (docs/lab.md lists the sources); where AWS's wording is not
known, the message says so by starting with "lab:", so nobody mistakes it for AWS's.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"

NO_PROVIDER = "No OpenIDConnect provider found in your account for {issuer}"
# Two spaces after the comma: that is how STS sends it (raw responses in SDK bug reports).
KEY_UNAVAILABLE = (
    "Couldn't retrieve verification key from your identity provider,  please reference "
    "AssumeRoleWithWebIdentity documentation for requirements"
)
INCORRECT_AUDIENCE = "Incorrect token audience"
TOKEN_EXPIRED = (
    "Token expired: current date/time {now} must be before the expiration date/time {expiration}"
)
NOT_AUTHORIZED = "Not authorized to perform sts:AssumeRoleWithWebIdentity"
INVALID_ARN = "Request ARN is invalid"


@dataclass(frozen=True)
class StsError(Exception):
    """A refusal, in STS's terms. Raised by the validation, turned into XML at the HTTP edge."""

    code: str
    message: str
    status: int = 400

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def no_provider(issuer: str) -> StsError:
    return StsError("InvalidIdentityToken", NO_PROVIDER.format(issuer=issuer))


def key_unavailable() -> StsError:
    return StsError("InvalidIdentityToken", KEY_UNAVAILABLE)


def incorrect_audience() -> StsError:
    return StsError("InvalidIdentityToken", INCORRECT_AUDIENCE)


def token_expired(now: int, expiration: int) -> StsError:
    return StsError("ExpiredTokenException", TOKEN_EXPIRED.format(now=now, expiration=expiration))


def not_authorized() -> StsError:
    return StsError("AccessDenied", NOT_AUTHORIZED, 403)


def invalid_arn() -> StsError:
    return StsError("ValidationError", INVALID_ARN)


def invalid_token(reason: str) -> StsError:
    """A token STS cannot even read as a signed JWT; AWS's wording for these is not known."""
    return StsError("InvalidIdentityToken", f"lab: {reason}")


def missing_parameter(name: str) -> StsError:
    return StsError("MissingParameter", f"lab: the request has no {name}")


def internal_failure(reason: str) -> StsError:
    """The lab itself failed (moto unreachable): STS's code for its own faults, retried by SDKs."""
    return StsError("InternalFailure", f"lab: the validating STS failed ({reason})", 500)


def error_document(error: StsError, request_id: str) -> bytes:
    """The ``ErrorResponse`` document of STS's query protocol, as botocore parses it."""
    return (
        f'<ErrorResponse xmlns="{STS_NAMESPACE}">\n'
        "  <Error>\n"
        "    <Type>Sender</Type>\n"
        f"    <Code>{escape(error.code)}</Code>\n"
        f"    <Message>{escape(error.message)}</Message>\n"
        "  </Error>\n"
        f"  <RequestId>{escape(request_id)}</RequestId>\n"
        "</ErrorResponse>\n"
    ).encode()
