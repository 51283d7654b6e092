"""Daemons of the node: launched detached with a pid file, found again only by that pid file and
a command line naming their cluster directory (a recycled pid is never signalled)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat.rpartition(")")[2].split()[0]


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def alive(pid: int, marker: str) -> bool:
    """PID runs (not a zombie) and its command line mentions MARKER (the cluster directory)."""
    if _state(pid) in (None, "Z", "X"):
        return False
    parts = cmdline(pid)
    # Empty while the process is between fork and exec or inside an exec (unshare and nsenter
    # exec what they run): it is still ours then.
    return not parts or any(marker in part for part in parts)


def describe(pid: int) -> str:
    """pid, state and what it waits in, for a daemon that hangs."""
    try:
        wchan = Path(f"/proc/{pid}/wchan").read_text().strip()
    except OSError:
        wchan = "?"
    return f"pid {pid}, state {_state(pid) or 'gone'}, waiting in {wchan or '-'}"


def read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def running(pidfile: Path, marker: str) -> int | None:
    pid = read_pid(pidfile)
    return pid if pid is not None and alive(pid, marker) else None


def launch(
    argv: Sequence[str],
    pidfile: Path,
    log: Path,
    *,
    pass_fds: Sequence[int] = (),
    env: dict[str, str] | None = None,
) -> int:
    """Start ARGV in a session of its own, stdin closed, output appended to LOG."""
    with log.open("ab") as out:
        out.write(f"\n===== {time.strftime('%FT%TZ', time.gmtime())}: {' '.join(argv)}\n".encode())
        out.flush()
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
            env=env,
        )
    # A daemon outlives us: keep Popen from reporting it as a leaked child at exit.
    process.returncode = 0
    pidfile.write_text(f"{process.pid}\n")
    return process.pid


def wait_gone(pid: int, marker: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid, marker):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop(pidfile: Path, marker: str, *, timeout: float = 30.0) -> None:
    """SIGTERM the daemon of PIDFILE, SIGKILL it after TIMEOUT s; forget its pid file."""
    pid = running(pidfile, marker)
    if pid is not None:
        signal_pid(pid, signal.SIGTERM)
        if not wait_gone(pid, marker, timeout):
            signal_pid(pid, signal.SIGKILL)
            if not wait_gone(pid, marker, 10):
                raise RuntimeError(f"{pidfile.stem} (pid {pid}) survived SIGKILL")
    pidfile.unlink(missing_ok=True)


def signal_pid(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def pids_with(marker: str) -> list[int]:
    """Every live process whose command line mentions MARKER (for the containerd shims, which
    containerd starts and leaves behind when it stops)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            pid = int(entry.name)
            # Only a command line that names MARKER: never a process caught inside an exec.
            if _state(pid) not in (None, "Z", "X") and any(marker in p for p in cmdline(pid)):
                found.append(pid)
    return found
