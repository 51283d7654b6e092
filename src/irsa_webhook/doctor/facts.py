"""Records of what doctor read, shared by the edge that reads (``gather``) and the pure checks
that judge; no I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Fetched:
    """A JSON document read over https, or why it could not be."""

    url: str
    document: dict[str, Any] | None = None
    error: str = ""
    content_type: str = ""
    elapsed: float = 0.0


@dataclass(frozen=True, slots=True)
class TlsProbe:
    """The webhook's serving certificate, checked against the configuration's caBundle."""

    address: str
    verified: bool
    detail: str
    """Verified: the certificate's expiry. Not verified: the TLS or connection error."""
    reachable: bool = True
