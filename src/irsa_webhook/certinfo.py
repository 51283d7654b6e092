"""The two facts the webhook reports about its serving certificate, its expiry and its subject,
read from the certificate's DER without a cryptography library.

``ssl`` validates and serves the certificate but has no public way to read one, and the
``cryptography`` package that can costs ``serve`` about 8 MB of memory and a tenth of a second
at start-up (its Rust core). Nothing here decides trust: OpenSSL does that when it loads the
pair. A certificate this reader cannot follow is reported as ``CertificateFormatError``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from dataclasses import dataclass

_SEQUENCE, _SET, _OID = 0x30, 0x31, 0x06
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18
_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}

# The short names RFC 4514 defines (and cryptography's rfc4514_string uses); others are dotted.
_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "STREET",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
}

_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"


class CertificateFormatError(ValueError):
    """The PEM holds no X.509 certificate this reader can follow."""


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    not_after: datetime.datetime
    """In UTC."""
    subject: str
    """RFC 4514, as ``openssl x509 -subject -nameopt RFC2253`` prints it."""


def read_certificate(pem: bytes) -> CertificateInfo:
    """Expiry and subject of the first certificate in ``pem`` (the leaf of a chain file)."""
    start = pem.find(_PEM_BEGIN)
    end = pem.find(_PEM_END, start)
    if start < 0 or end < 0:
        raise CertificateFormatError("no PEM CERTIFICATE block")
    try:
        der = base64.b64decode(b"".join(pem[start + len(_PEM_BEGIN) : end].split()), validate=True)
    except (binascii.Error, ValueError):
        raise CertificateFormatError("the CERTIFICATE block is not base64") from None
    try:
        return _read(der)
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise CertificateFormatError(f"not an X.509 certificate: {exc}") from None


Element = tuple[int, int, int]
"""(tag, start of the content, end of the content) of one DER element."""


def _read(der: bytes) -> CertificateInfo:
    certificate = _expect(_tlv(der, 0), _SEQUENCE)
    tbs = _expect(_tlv(der, certificate[1]), _SEQUENCE)
    fields = _children(der, tbs)
    if fields and fields[0][0] == 0xA0:
        fields = fields[1:]  # the explicit version tag; absent for v1 certificates
    # serialNumber, signature, issuer, validity, subject, ...
    if len(fields) < 5:
        raise ValueError("the TBSCertificate is too short")
    validity = _children(der, _expect(fields[3], _SEQUENCE))
    if len(validity) != 2:
        raise ValueError("the validity is not two times")
    return CertificateInfo(_time(der, validity[1]), _name(der, _expect(fields[4], _SEQUENCE)))


def _expect(element: Element, tag: int) -> Element:
    if element[0] != tag:
        raise ValueError(f"expected tag {tag:#x}, found {element[0]:#x}")
    return element


def _tlv(der: bytes, offset: int) -> Element:
    tag = der[offset]
    length = der[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4:
            raise ValueError("unsupported length")
        length = int.from_bytes(der[offset : offset + count], "big")
        offset += count
    if offset + length > len(der):
        raise ValueError("an element runs past the end")
    return tag, offset, offset + length


def _children(der: bytes, parent: Element) -> list[Element]:
    elements = []
    position = parent[1]
    while position < parent[2]:
        element = _tlv(der, position)
        elements.append(element)
        position = element[2]
    return elements


def _time(der: bytes, element: Element) -> datetime.datetime:
    tag, start, end = element
    text = der[start:end].decode("ascii")
    if tag == _UTC_TIME:
        # RFC 5280: two-digit years 50..99 are 19xx, 00..49 are 20xx.
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != _GENERALIZED_TIME:
        raise ValueError("the expiry is not a time")
    moment = datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ")
    return moment.replace(tzinfo=datetime.UTC)


def _name(der: bytes, name: Element) -> str:
    """RFC 4514: the relative names last to first, attributes of one joined by ``+``."""
    names = []
    for rdn in _children(der, name):
        attributes = []
        for attribute in _children(der, _expect(rdn, _SET)):
            oid, value = _children(der, _expect(attribute, _SEQUENCE))[:2]
            _expect(oid, _OID)
            key = _oid(der[oid[1] : oid[2]])
            content = der[value[1] : value[2]]
            encoding = _STRINGS.get(value[0])
            # A value that is no string type: its bytes in hex (it is only shown in a log line).
            text = _escape(content.decode(encoding)) if encoding else "#" + content.hex()
            attributes.append(f"{_NAMES.get(key, key)}={text}")
        names.append("+".join(attributes))
    return ",".join(reversed(names))


def _oid(content: bytes) -> str:
    parts = [min(content[0] // 40, 2), content[0] - 40 * min(content[0] // 40, 2)]
    value = 0
    for byte in content[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(part) for part in parts)


def _escape(value: str) -> str:
    """RFC 4514 section 2.4, step by step as cryptography's ``rfc4514_string`` does it."""
    escaped = "".join(f"\\{char}" if char in '\\,+"<>;' else char for char in value)
    escaped = escaped.replace("\0", "\\00")
    if escaped.startswith(("#", " ")):
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped
