"""The serving certificate: one live ``SSLContext``, its key pair reloaded when the files change.

uvicorn loads a certificate once; Kubernetes rotates Secret volumes by swapping a ``..data``
symlink. We poll the resolved files' identity (inode, size, mtime) and call ``load_cert_chain``
on the same context, so new handshakes get the new certificate and open connections are kept.
A failed reload keeps the previous certificate and says why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from irsa_webhook.certinfo import read_certificate
from irsa_webhook.config import ConfigError
from irsa_webhook.metrics import Metrics

logger = logging.getLogger(__name__)

_MIN_VERSIONS = {
    "1.2": ssl.TLSVersion.TLSv1_2,
    "VersionTLS12": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
    "VersionTLS13": ssl.TLSVersion.TLSv1_3,
}
_REFUSED_VERSIONS = frozenset({"1.0", "1.1", "VersionTLS10", "VersionTLS11"})

# The TLS 1.2 suites the reference accepts by IANA name, with their OpenSSL names.
IANA_TO_OPENSSL = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
}


class CertificateError(Exception):
    """The certificate or key file cannot be used; the message names the file and the fix."""


def min_version(value: str) -> ssl.TLSVersion:
    """Map ``--tls-min-version`` (reference spellings) to a TLS version; 1.0/1.1 are refused."""
    if value in _REFUSED_VERSIONS:
        raise ConfigError(f"--tls-min-version {value} is insecure and refused; use 1.2 or 1.3")
    try:
        return _MIN_VERSIONS[value]
    except KeyError:
        raise ConfigError(
            f"--tls-min-version {value!r} is not one of 1.2, 1.3, VersionTLS12, VersionTLS13"
        ) from None


def openssl_ciphers(names: tuple[str, ...]) -> str:
    """Translate ``--tls-cipher-suites`` IANA names into an OpenSSL cipher string."""
    unknown = [name for name in names if name not in IANA_TO_OPENSSL]
    if unknown:
        raise ConfigError(
            f"--tls-cipher-suites: unknown or unsupported suite(s) {', '.join(unknown)}; "
            "use IANA names such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        )
    return ":".join(dict.fromkeys(IANA_TO_OPENSSL[name] for name in names))


def create_context(minimum: str, cipher_suites: tuple[str, ...]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = min_version(minimum)
    if cipher_suites:
        context.set_ciphers(openssl_ciphers(cipher_suites))
    # HTTP/1.1 only: the API server reuses connections, and uvicorn does not speak h2.
    context.set_alpn_protocols(["http/1.1"])
    context.options |= ssl.OP_NO_COMPRESSION
    return context


@dataclass(frozen=True, slots=True)
class _FileState:
    device: int
    inode: int
    size: int
    mtime_ns: int


def _state(path: str) -> _FileState | None:
    try:
        info = os.stat(path)  # follows symlinks: a ..data swap changes the target's identity
    except OSError:
        return None
    return _FileState(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def load_pem_pair(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Load a key pair held in memory into the live ``context``.

    Raises ``CertificateError`` when the pair is unusable; ``context`` then keeps what it had.
    """
    try:
        with _memory_file(cert_pem) as cert_path, _memory_file(key_pem) as key_path:
            _check_pair(cert_path, key_path)
            context.load_cert_chain(cert_path, key_path)
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise CertificateError(f"cannot load the self-managed key pair: {exc}") from None


def load_cert_chain_data(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """``context.load_cert_chain`` for PEM held in memory (a client certificate, say)."""
    with _memory_file(cert_pem) as cert_path, _memory_file(key_pem) as key_path:
        context.load_cert_chain(cert_path, key_path)


def _check_pair(cert_path: str, key_path: str) -> None:
    # OpenSSL installs the certificate before it checks the key, so a mismatched pair loaded
    # into the live context would break every handshake: a scratch context first, where
    # OpenSSL refuses a key that does not belong to the certificate.
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)


@contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """``load_cert_chain`` only reads files: PEM held in memory passes through an anonymous
    in-memory file (memfd), so a key never reaches a disk and a read-only root filesystem is
    no obstacle."""
    descriptor = os.memfd_create("irsa-webhook-tls", os.MFD_CLOEXEC)
    try:
        with os.fdopen(descriptor, "wb", closefd=False) as file:
            file.write(data)
        yield f"/proc/self/fd/{descriptor}"
    finally:
        os.close(descriptor)


class CertificateReloader:
    """Keeps ``context`` serving the key pair currently in ``cert_path``/``key_path``."""

    def __init__(
        self,
        context: ssl.SSLContext,
        cert_path: str,
        key_path: str,
        metrics: Metrics | None = None,
        interval: float = 10.0,
    ) -> None:
        self.context = context
        self.cert_path = cert_path
        self.key_path = key_path
        self.metrics = metrics
        self.interval = interval
        self.loaded = False
        self.not_after: float | None = None
        self._seen: tuple[_FileState | None, _FileState | None] | None = None

    def load(self) -> None:
        """Load the key pair now; raise ``CertificateError`` saying what is wrong."""
        seen = (_state(self.cert_path), _state(self.key_path))
        try:
            certificate = read_certificate(Path(self.cert_path).read_bytes())
            _check_pair(self.cert_path, self.key_path)
            self.context.load_cert_chain(self.cert_path, self.key_path)
        except FileNotFoundError as exc:
            raise CertificateError(
                f"{exc.filename} does not exist; mount the TLS Secret or pass --tls-cert/--tls-key"
            ) from None
        except (OSError, ValueError, TypeError, ssl.SSLError) as exc:
            raise CertificateError(
                f"cannot load the key pair {self.cert_path} + {self.key_path}: {exc}; "
                "both must be PEM and the key must match the certificate"
            ) from None
        self._seen = seen
        self.loaded = True
        self.not_after = certificate.not_after.timestamp()
        if self.metrics is not None:
            self.metrics.certificate_expiry.set(self.not_after)
        logger.info(
            "serving certificate loaded",
            extra={
                "subject": certificate.subject,
                "not_after": certificate.not_after.isoformat(),
            },
        )

    def check(self) -> bool:
        """Reload when either file changed; True when a new key pair was loaded."""
        current = (_state(self.cert_path), _state(self.key_path))
        if current == self._seen:
            return False
        try:
            self.load()
        except CertificateError as exc:
            # Half-written rotations land here too; the next poll retries.
            self._seen = current
            logger.warning("certificate reload failed; keeping the previous one: %s", exc)
            if self.metrics is not None:
                self.metrics.certificate_reloads.labels("error").inc()
            return False
        if self.metrics is not None:
            self.metrics.certificate_reloads.labels("success").inc()
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()
