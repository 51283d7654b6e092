"""Container images as docker-archive tars (the `docker save` format that `ctr images import`
and `buildah pull docker-archive:` read), written from a root file system with the standard
library: no registry, no Docker."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config this project sets."""

    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = None
    env: Sequence[str] = field(default_factory=lambda: [DEFAULT_PATH])
    user: str = ""
    working_dir: str = "/"

    def as_json(self, diff_id: str) -> bytes:
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": list(self.env),
                "Entrypoint": list(self.entrypoint) if self.entrypoint is not None else None,
                "Cmd": list(self.cmd) if self.cmd is not None else None,
                "User": self.user,
                "WorkingDir": self.working_dir,
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        return json.dumps(config, sort_keys=True).encode()


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Same bytes for the same tree: the layer digest then depends only on the files.
    info.mtime = 0
    info.uname = info.gname = ""
    return info


def write_layer(rootfs: Path, out: Path) -> str:
    """Tar ROOTFS (owners and modes kept, times zeroed) into OUT; return its diff id."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as layer:
        for entry in sorted(os.listdir(rootfs)):
            layer.add(rootfs / entry, arcname=entry, filter=_normalized)
    digest = hashlib.sha256()
    with out.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    with tempfile.SpooledTemporaryFile() as buffer:
        buffer.write(data)
        buffer.seek(0)
        archive.addfile(info, buffer)


def write_image(name: str, rootfs: Path, config: ImageConfig, out: Path) -> None:
    """One-layer docker-archive of ROOTFS tagged NAME, written atomically to OUT."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        layer_path = Path(work) / "layer.tar"
        diff_id = write_layer(rootfs, layer_path)
        config_bytes = config.as_json(diff_id)
        config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
        layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
        manifest = [{"Config": config_name, "RepoTags": [name], "Layers": [layer_name]}]
        partial = Path(work) / "image.tar"
        with tarfile.open(partial, "w") as archive:
            archive.add(layer_path, arcname=layer_name)
            _add_bytes(archive, config_name, config_bytes)
            _add_bytes(archive, "manifest.json", json.dumps(manifest).encode())
        partial.replace(out)


def read_manifest(image: Path) -> list[dict[str, object]]:
    """The manifest.json of a docker-archive (for checks)."""
    with tarfile.open(image) as archive:
        member = archive.extractfile("manifest.json")
        if member is None:
            raise ValueError(f"{image}: no manifest.json")
        manifest: list[dict[str, object]] = json.load(member)
    return manifest


def read_config(image: Path) -> dict[str, object]:
    """The image config of a one-image docker-archive."""
    with tarfile.open(image) as archive:
        manifest_member = archive.extractfile("manifest.json")
        if manifest_member is None:
            raise ValueError(f"{image}: no manifest.json")
        manifest = json.load(manifest_member)
        config_member = archive.extractfile(manifest[0]["Config"])
        if config_member is None:
            raise ValueError(f"{image}: no config")
        config: dict[str, object] = json.load(config_member)
    return config
