"""The container-credentials (EKS Pod Identity) file, re-read whenever it changes.

The file is polled, not watched with inotify: a ``stat`` a second is nothing, it works on every
filesystem (overlay, NFS, FUSE), and it sees what the reference's directory watcher missed
(docs/reference.md section 5.3): ConfigMap and Secret volumes are updated by swapping
the ``..data`` symlink, which changes the inode of the file the path resolves to, never an event
named after the path.
"""

from __future__ import annotations

import asyncio
import logging
import os

from irsa_webhook.identity import (
    EMPTY_CONTAINER_CREDENTIALS,
    ContainerCredentialsConfig,
    SourceError,
    parse_container_credentials,
)
from irsa_webhook.metrics import Metrics

logger = logging.getLogger(__name__)

_SOURCE = "container-credentials"

_Signature = tuple[int, int, int, int, int] | None
"""(device, inode, size, mtime ns, ctime ns) of the file the path resolves to; None: absent."""


class ContainerCredentialsSource:
    """The parsed file as ``current``; ``synced`` once it has been read (or found missing).

    A missing or empty file means no pod uses container credentials. A file that cannot be
    parsed is logged and the previous configuration stays until the file changes again.
    """

    def __init__(
        self, path: str, poll_interval: float = 1.0, *, metrics: Metrics | None = None
    ) -> None:
        self.path = path
        self.current: ContainerCredentialsConfig = EMPTY_CONTAINER_CREDENTIALS
        self.synced = False
        self._poll_interval = poll_interval
        self._metrics = metrics
        self._signature: _Signature = None

    def load_once(self) -> None:
        """Read the file if it changed since the last call (always, the first time)."""
        signature = _signature(self.path)
        if self.synced and signature == self._signature:
            return
        self._signature = signature
        extra = {"source": _SOURCE, "path": self.path}
        try:
            with open(self.path, "rb") as file:
                content: bytes | None = file.read()
        except FileNotFoundError:
            content = None
        except OSError as exc:
            logger.warning(
                "cannot read the container-credentials file; keeping the previous one",
                extra={**extra, "detail": exc.strerror},
            )
            self._mark_synced()
            return
        try:
            self.current = parse_container_credentials(content)
        except SourceError as exc:
            logger.warning(
                "container-credentials file ignored; keeping the previous one",
                extra={**extra, "detail": str(exc)},
            )
        else:
            logger.info(
                "container-credentials file loaded",
                extra={
                    **extra,
                    "identities": len(self.current.identities),
                    "present": content is not None,
                },
            )
        self._mark_synced()

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            self.load_once()
            await asyncio.sleep(self._poll_interval)

    def _mark_synced(self) -> None:
        self.synced = True
        if self._metrics is not None:
            self._metrics.cache_synced.labels(_SOURCE).set(1)
            self._metrics.cache_size.labels(_SOURCE).set(len(self.current.identities))


def _signature(path: str) -> _Signature:
    try:
        # os.stat follows symlinks: a ..data swap shows up as a new inode.
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns
