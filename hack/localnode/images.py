"""The node's images, built locally and cached in the project cache keyed by their inputs:

- pause (the sandbox image): kubernetes' own pause.c from the Go module cache, gcc -static;
- busybox: Debian's busybox-static binary;
- the webhook, built by buildah from the project's own Dockerfile. Its base image,
  python:3.11-slim-bookworm, cannot be pulled (no registry), so a stand-in with the same name is
  made locally: Debian bookworm (debootstrap) with Debian's Python 3.11 and pip, linked where the
  official image has them (/usr/local/bin);
- the lab workload (lab.Containerfile beside this file): that base plus boto3 from PyPI.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from . import log
from .archive import ImageConfig, write_image
from .layout import BUSYBOX_IMAGE, LAB_IMAGE, PAUSE_IMAGE, REPO, WEBHOOK_IMAGE, cache_dir

BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
BASE_SUITE = "bookworm"
BASE_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates")
# Bump to rebuild every cached image made by an older recipe (a change to _prepare_base, say).
RECIPE = "1"
HERE = Path(__file__).resolve().parent
KEEP_PER_KIND = 3
LAB_CONTAINERFILE = HERE / "lab.Containerfile"


@dataclass(frozen=True)
class Image:
    name: str
    tar: Path


def images_dir() -> Path:
    return cache_dir() / "images"


def digest_of(parts: Iterable[str | bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:16]


def files_digest(root: Path, paths: Iterable[Path]) -> list[str | bytes]:
    parts: list[str | bytes] = []
    for path in sorted(paths):
        parts += [str(path.relative_to(root)), path.read_bytes()]
    return parts


def _cached(kind: str, key: str, build: Callable[[Path], None]) -> Path:
    """images/KIND-KEY.tar, built by BUILD(out) when missing."""
    out = images_dir() / f"{kind}-{key}.tar"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Checkouts share the cache: one builds, the others wait and reuse its tar.
    with (out.parent / f".{kind}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.exists():
            build(out)
    # Checkouts at different commits take turns: keep a few recent builds of each kind.
    older = sorted(out.parent.glob(f"{kind}-*.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in older[KEEP_PER_KIND:]:
        stale.unlink(missing_ok=True)
    return out


def _run(argv: list[str], what: str, log_file: Path) -> None:
    with log_file.open("ab") as out:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError(f"{what} failed (exit {result.returncode}):\n" + "\n".join(tail))


# ------------------------------------------------------------------------- pause, busybox --


def pause_source(k8s_version: str) -> Path:
    modcache = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(modcache) / f"k8s.io/kubernetes@{k8s_version}/build/pause/linux/pause.c"


def pause_image(k8s_version: str) -> Image:
    source = pause_source(k8s_version)
    if not source.exists():
        raise RuntimeError(f"{source} missing: run hack/build-testenv.sh (it downloads it)")
    key = digest_of([RECIPE, source.read_bytes()])

    def build(out: Path) -> None:
        log.step("image %s (kubernetes' pause.c, static)", PAUSE_IMAGE)
        with tempfile.TemporaryDirectory() as work:
            rootfs = Path(work) / "rootfs"
            rootfs.mkdir()
            binary = rootfs / "pause"
            subprocess.run(
                [
                    "gcc",
                    "-Os",
                    "-static",
                    f"-DVERSION={k8s_version}",
                    "-o",
                    str(binary),
                    str(source),
                ],
                check=True,
            )
            subprocess.run(["strip", str(binary)], check=True)
            write_image(PAUSE_IMAGE, rootfs, ImageConfig(entrypoint=["/pause"]), out)

    return Image(PAUSE_IMAGE, _cached("pause", key, build))


def busybox_image() -> Image:
    busybox = Path("/bin/busybox")
    key = digest_of([RECIPE, busybox.read_bytes()])

    def build(out: Path) -> None:
        log.step("image %s (Debian's busybox-static)", BUSYBOX_IMAGE)
        with tempfile.TemporaryDirectory() as work:
            rootfs = Path(work) / "rootfs"
            for sub in ("bin", "etc", "tmp"):
                (rootfs / sub).mkdir(parents=True)
            shutil.copy2(busybox, rootfs / "bin" / "busybox")
            applets = subprocess.run(
                [str(busybox), "--list"], capture_output=True, text=True, check=True
            ).stdout.split()
            for applet in applets:
                if applet != "busybox":
                    (rootfs / "bin" / applet).symlink_to("busybox")
            (rootfs / "etc" / "passwd").write_text(
                "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\n"
            )
            (rootfs / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")
            (rootfs / "tmp").chmod(0o1777)
            write_image(BUSYBOX_IMAGE, rootfs, ImageConfig(cmd=["/bin/sh"]), out)

    return Image(BUSYBOX_IMAGE, _cached("busybox", key, build))


# ------------------------------------------------------------------------------ the base --


def _prepare_base(rootfs: Path) -> None:
    """Make Debian's Python look like the official image's: /usr/local/bin/python3.11 and pip,
    and pip allowed to install (the official image has no EXTERNALLY-MANAGED marker)."""
    local_bin = rootfs / "usr/local/bin"
    local_bin.mkdir(parents=True, exist_ok=True)
    for name, target in (
        ("python3.11", "/usr/bin/python3.11"),
        ("python3", "/usr/bin/python3.11"),
        ("python", "/usr/bin/python3.11"),
        ("pip", "/usr/bin/pip3"),
        ("pip3", "/usr/bin/pip3"),
    ):
        (local_bin / name).symlink_to(target)
    for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    for pattern in (
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/lib/apt/lists/*",
        "usr/share/doc/*",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/locale/*",
        "var/log/*",
    ):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def base_image() -> Image:
    key = digest_of([RECIPE, BASE_SUITE, BASE_MIRROR, *BASE_PACKAGES])

    def build(out: Path) -> None:
        log.step(
            "image %s stand-in: debootstrap %s + %s (first time: 2-5 min)",
            BASE_IMAGE,
            BASE_SUITE,
            ", ".join(BASE_PACKAGES),
        )
        with tempfile.TemporaryDirectory(dir=out.parent) as work:
            rootfs = Path(work) / "rootfs"
            log_file = out.parent / "debootstrap.log"
            log_file.write_text("")
            _run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    BASE_SUITE,
                    str(rootfs),
                    BASE_MIRROR,
                ],
                "debootstrap",
                log_file,
            )
            _prepare_base(rootfs)
            config = ImageConfig(
                cmd=["python3"],
                env=[
                    "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "LANG=C.UTF-8",
                ],
            )
            write_image(BASE_IMAGE, rootfs, config, out)

    return Image(BASE_IMAGE, _cached("base", key, build))


# ----------------------------------------------------------------------- buildah builds --


# The host's trust store. Networks with a TLS-inspecting egress proxy (such as this project's CI)
# need it for the Dockerfile's pip and uv downloads; it is bind-mounted into RUN steps only and
# never becomes part of an image.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class Buildah:
    """buildah with a throw-away vfs store (no overlay mounts, no daemon) and chroot isolation."""

    def __init__(self, work: Path, log_file: Path) -> None:
        self.work = work
        self.log_file = log_file
        policy = work / "policy.json"
        policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
        # Mounted into RUN steps only (never committed): Debian's pip reads the system bundle;
        # uv needs telling, through its system-wide config file, to read it instead of its own.
        self.uv_config = work / "uv.toml"
        self.uv_config.write_text("system-certs = true\n")
        self.prefix = [
            "buildah",
            "--root",
            str(work / "root"),
            "--runroot",
            str(work / "runroot"),
            "--storage-driver",
            "vfs",
        ]
        self.policy = str(policy)

    def run(self, *args: str, what: str) -> None:
        _run([*self.prefix, *args], what, self.log_file)

    def host_trust(self) -> list[str]:
        if not HOST_CA_BUNDLE.exists():
            return []
        return [
            "--volume",
            f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
            "--volume",
            f"{self.uv_config}:/etc/uv/uv.toml:ro",
        ]

    def load_base(self, base: Image) -> None:
        self.run(
            "pull",
            "--signature-policy",
            self.policy,
            f"docker-archive:{base.tar}",
            what="buildah pull",
        )
        self.run("tag", self._id_of_last_pull(base), base.name, what="buildah tag")

    def _id_of_last_pull(self, base: Image) -> str:
        result = subprocess.run(
            [*self.prefix, "images", "--quiet", "--no-trunc"],
            capture_output=True,
            text=True,
            check=True,
        )
        ids = result.stdout.split()
        if len(ids) != 1:
            raise RuntimeError(f"expected one image in the buildah store after pulling {base.tar}")
        return ids[0]

    def build(self, name: str, containerfile: Path, context: Path) -> None:
        self.run(
            "bud",
            "--isolation",
            "chroot",
            "--pull-never",
            "--layers=false",
            "--signature-policy",
            self.policy,
            *self.host_trust(),
            "-f",
            str(containerfile),
            "-t",
            name,
            str(context),
            what=f"buildah bud {name}",
        )

    def save(self, name: str, out: Path) -> None:
        partial = out.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        self.run(
            "push",
            "--signature-policy",
            self.policy,
            name,
            f"docker-archive:{partial}:{name}",
            what="buildah push",
        )
        partial.replace(out)


def _buildah_image(kind: str, name: str, containerfile: Path, context: Path, key: str) -> Image:
    base = base_image()

    def build(out: Path) -> None:
        log.step("image %s: buildah bud -f %s (first time: 1-3 min)", name, containerfile.name)
        with tempfile.TemporaryDirectory(dir=out.parent) as work:
            log_file = out.parent / f"{kind}-build.log"
            log_file.write_text("")
            builder = Buildah(Path(work), log_file)
            builder.load_base(base)
            builder.build(name, containerfile, context)
            builder.save(name, out)
            # The vfs store holds full copies of every layer; buildah owns its files' removal.
            subprocess.run([*builder.prefix, "rm", "--all"], capture_output=True, check=False)
            subprocess.run(
                [*builder.prefix, "rmi", "--all", "--force"], capture_output=True, check=False
            )

    return Image(name, _cached(kind, digest_of([key, base.tar.name]), build))


def webhook_context_files() -> list[Path]:
    """What the Dockerfile's context holds after .dockerignore (kept in step with it by a test)."""
    files = [
        REPO / "Dockerfile",
        REPO / ".dockerignore",
        REPO / "pyproject.toml",
        REPO / "uv.lock",
        REPO / "README.md",
    ]
    files += sorted(REPO.glob("LICENSE*"))
    files += sorted(
        p
        for p in (REPO / "src").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    return files


def webhook_image() -> Image:
    key = digest_of([RECIPE, *files_digest(REPO, webhook_context_files())])
    return _buildah_image("webhook", WEBHOOK_IMAGE, REPO / "Dockerfile", REPO, key)


def lab_image() -> Image:
    key = digest_of([RECIPE, LAB_CONTAINERFILE.read_bytes()])
    return _buildah_image("lab", LAB_IMAGE, LAB_CONTAINERFILE, HERE, key)


def all_images(k8s_version: str) -> list[Image]:
    return [pause_image(k8s_version), busybox_image(), webhook_image(), lab_image()]
