"""The container image without a Docker engine: the Dockerfile's build stage is replayed on this
machine (its ENV, WORKDIR, COPY and RUN lines, with the image's virtual environment moved into a
temporary directory), and the result is started the way the runtime stage starts it: its ENV, its
USER, its ENTRYPOINT and CMD. So a change to the Dockerfile's install steps, its user or its
environment is what this test runs."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trustme
import yaml

from loopback import free_port

REPO = Path(__file__).resolve().parents[2]
DOCKER_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What the build needs from this machine to reach PyPI; nothing else of the test's environment
# (in particular no PIP_FIND_LINKS or other local package source) reaches the replay.
NETWORK_VARIABLES = re.compile(
    r"^(https?_proxy|no_proxy|all_proxy|SSL_CERT_FILE|SSL_CERT_DIR|PIP_CERT|PIP_INDEX_URL|"
    r"UV_INDEX_URL|UV_DEFAULT_INDEX)$",
    re.IGNORECASE,
)


@dataclass
class Stage:
    base: str
    env: dict[str, str] = field(default_factory=dict)
    steps: list[tuple[str, str]] = field(default_factory=list)


def expand(value: str, known: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda match: known.get(match[1], ""), value)


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages, each with its ENV (expanded) and its other instructions in order."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    stages: list[Stage] = []
    for instruction in logical:
        keyword, _, args = instruction.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            stages.append(Stage(base=args.split()[0]))
        elif keyword == "ENV":
            stage = stages[-1]
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                stage.env[key] = expand(value, {"PATH": DOCKER_DEFAULT_PATH, **stage.env})
        elif stages:
            stages[-1].steps.append((keyword, args))
    return stages


def instruction(stage: Stage, keyword: str) -> str:
    (args,) = [args for found, args in stage.steps if found == keyword]
    return args


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path below root with its size, mode and modification time."""
    found = {}
    for path in [root, *root.rglob("*")]:
        status = path.lstat()
        found[str(path.relative_to(root))] = (status.st_size, status.st_mode, status.st_mtime_ns)
    return found


def chown_tree(root: Path, uid: int, gid: int) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, gid, follow_symlinks=False)


@dataclass
class Image:
    """The replayed image: where its virtual environment is and how the runtime stage runs it."""

    venv: Path
    env: dict[str, str]
    uid: int
    gid: int
    command: list[str]


def host_python(base: str) -> str:
    """The base image's interpreter, or this machine's build of the same Python version. Only the
    system locations: the unprivileged user must be able to run it."""
    version = re.fullmatch(r"python:(\d+\.\d+)[-.\w]*", base)
    assert version, f"unexpected base image {base}"
    python = shutil.which(f"python{version[1]}", path="/usr/local/bin:/usr/bin")
    if python is None:
        pytest.fail(
            f"no system python{version[1]} (the image's base) in /usr/local/bin or /usr/bin"
        )
    return python


def replay(root: Path) -> Image:
    build, runtime = parse_dockerfile((REPO / "Dockerfile").read_text())
    image_venv = build.env["UV_PROJECT_ENVIRONMENT"]
    venv = root / "venv"

    def on_host(text: str) -> str:
        return text.replace(image_venv, str(venv))

    # The base image's pip, which the first RUN line uses to install the pinned uv.
    tools = root / "base-image-tools"
    subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True, timeout=120)
    build_env = {
        **{key: value for key, value in os.environ.items() if NETWORK_VARIABLES.match(key)},
        "LANG": "C.UTF-8",
        "HOME": str(root / "build-home"),
        "PATH": f"{tools / 'bin'}:{DOCKER_DEFAULT_PATH}",
        **{key: on_host(value) for key, value in build.env.items()},
    }
    if not Path(build_env.get("UV_PYTHON", "/")).exists():
        build_env["UV_PYTHON"] = host_python(build.base)
    workdir = root
    for keyword, args in build.steps:
        if keyword == "WORKDIR":
            workdir = root / args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            # Docker's rules: a directory's contents go to the destination; files go into it
            # when it ends with a slash.
            *sources, destination = shlex.split(args)
            for source in sources:
                if (REPO / source).is_dir():
                    shutil.copytree(REPO / source, workdir / destination, dirs_exist_ok=True)
                elif destination.endswith("/"):
                    shutil.copy2(REPO / source, workdir / destination / Path(source).name)
                else:
                    shutil.copy2(REPO / source, workdir / destination)
        elif keyword == "RUN":
            result = subprocess.run(
                ["/bin/sh", "-c", on_host(args)],
                cwd=workdir,
                env=build_env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert result.returncode == 0, f"RUN {args}\n{result.stderr[-3000:]}"
    # The runtime stage copies only the environment: nothing of the build's sources is left.
    shutil.rmtree(workdir)
    (copied,) = [args for keyword, args in runtime.steps if keyword == "COPY"]
    assert copied == f"--from=build {image_venv} {image_venv}"
    uid, _, gid = instruction(runtime, "USER").partition(":")
    env = {key: on_host(value) for key, value in runtime.env.items()}
    entrypoint = json.loads(instruction(runtime, "ENTRYPOINT"))
    executable = shutil.which(entrypoint[0], path=env["PATH"])
    assert executable is not None, f"{entrypoint[0]} is not on the image's PATH {env['PATH']}"
    command = [executable, *entrypoint[1:], *json.loads(instruction(runtime, "CMD"))]
    return Image(venv, env, int(uid), int(gid or uid), command)


@pytest.fixture
def scratch() -> Iterator[Path]:
    # Not pytest's tmp_path: that lives below a directory only root may enter.
    root = Path(tempfile.mkdtemp(prefix="irsa-image-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def status_of(pid: int) -> dict[str, list[str]]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.split() for key, _, value in (line.partition(":") for line in lines)}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_image_runs_its_webhook_as_a_non_root_user_that_writes_nothing(scratch: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching to the image's user (setpriv --reuid) needs root")
    image = replay(scratch)

    site_packages = {path.name.lower() for path in image.venv.glob("lib/python*/site-packages/*")}
    # boto3 too: only the oidc/iam commands need it (the aws extra), never the webhook.
    for development_tool in ("pytest", "ruff", "mypy", "hypothesis", "trustme", "boto", "moto"):
        assert not any(name.startswith(development_tool) for name in site_packages)
    # The flag's default (443) cannot be bound without root: the image must move it.
    assert int(image.env["IRSA_WEBHOOK_PORT"]) > 1023

    # Certificates and a kubeconfig for an API server that is not there, readable by the image's
    # user only, as a Secret volume with defaultMode 0400 and fsGroup would give them.
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    run, tmp = scratch / "run", scratch / "tmp"
    run.mkdir()
    tmp.mkdir()
    leaf.cert_chain_pems[0].write_to_path(str(run / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(run / "tls.key"))
    ca.cert_pem.write_to_path(str(run / "ca.crt"))
    (run / "kubeconfig").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "gone",
                        "cluster": {
                            "server": f"https://127.0.0.1:{free_port()}",
                            "certificate-authority": str(run / "ca.crt"),
                        },
                    }
                ],
                "users": [{"name": "webhook", "user": {"token": "unused"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "webhook"}}],
                "current-context": "gone",
            }
        )
    )
    for path in run.iterdir():
        path.chmod(0o400)
    run.chmod(0o700)
    # Everything the process could write to is its own: the environment, its working directory
    # and its TMPDIR, so that a write would succeed there and show up below. The chart mounts no
    # writable volume at all (read-only root file system), so even temporary files are counted.
    for tree in (image.venv, run, tmp):
        chown_tree(tree, image.uid, image.gid)
    before = {tree: snapshot(tree) for tree in (image.venv, run, tmp)}

    port, metrics_port = free_port(), free_port()
    env = {
        **image.env,
        "IRSA_WEBHOOK_PORT": str(port),
        "HOME": "/nonexistent",
        "TMPDIR": str(tmp),
    }
    log_path = scratch / "webhook.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                "setpriv",
                f"--reuid={image.uid}",
                f"--regid={image.gid}",
                "--clear-groups",
                "--",
                *image.command,
                "--bind-address=127.0.0.1",
                f"--metrics-port={metrics_port}",
                f"--tls-cert={run / 'tls.crt'}",
                f"--tls-key={run / 'tls.key'}",
                f"--kubeconfig={run / 'kubeconfig'}",
                "--shutdown-delay=0s",
            ],
            env=env,
            cwd=run,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"the webhook exited:\n{log_path.read_text()[-3000:]}"
            try:
                healthz = httpx.get(f"{url}/healthz", verify=context, timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.2)
        assert healthz.status_code == 200
        readyz = httpx.get(f"{url}/readyz", verify=context, timeout=5)
        assert readyz.status_code == 503
        assert readyz.json()["status"] == "not ready"

        status = status_of(process.pid)
        assert status["Uid"] == [str(image.uid)] * 4
        assert status["Gid"] == [str(image.gid)] * 4
        assert status["Groups"] == []
        assert image.uid != 0
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode == 0, log_path.read_text()[-3000:]
    for tree, files in before.items():
        assert snapshot(tree) == files, f"the webhook wrote below {tree}"
