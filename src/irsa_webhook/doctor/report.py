"""One check's result, and the text and JSON a user reads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANNOT_RUN = 2


class Status(Enum):
    OK = "ok"
    FAIL = "fail"
    WARN = "warn"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check found; ``evidence`` holds the values compared (for skipped: why)."""

    check: str
    status: Status
    evidence: str
    symptom: str = ""
    """What the pod sees when this link is broken: the SDK's or STS's own error text."""
    fix: str = ""
    """The fix, in one sentence; empty when there is nothing to fix."""

    def as_json(self) -> dict[str, str]:
        fields = asdict(self)
        fields["status"] = self.status.value
        return fields


def ok(check: str, evidence: str) -> CheckResult:
    return CheckResult(check, Status.OK, evidence)


def skipped(check: str, why: str) -> CheckResult:
    return CheckResult(check, Status.SKIPPED, why)


def exit_code(results: Sequence[CheckResult]) -> int:
    return EXIT_FAILED if any(r.status is Status.FAIL for r in results) else EXIT_OK


_LABELS = {Status.OK: "ok", Status.FAIL: "FAIL", Status.WARN: "warn", Status.SKIPPED: "skipped"}


def render_text(subject: str, results: Sequence[CheckResult]) -> str:
    """One line per check (status, id, evidence); a failed or warned check adds what the pod
    sees and the fix on indented lines below it."""
    width = max(len(r.check) for r in results) if results else 0
    lines = [f"doctor {subject}"]
    for result in results:
        label = _LABELS[result.status]
        lines.append(f"{label:<8}{result.check:<{width}}  {result.evidence}")
        if result.status in (Status.FAIL, Status.WARN):
            indent = " " * (8 + width + 2)
            if result.symptom:
                lines.append(f"{indent}pod sees: {result.symptom}")
            if result.fix:
                lines.append(f"{indent}fix: {result.fix}")
    failed = [r.check for r in results if r.status is Status.FAIL]
    lines.append(f"failed: {', '.join(failed)}" if failed else "no check failed")
    return "\n".join(lines) + "\n"


def render_json(results: Sequence[CheckResult]) -> str:
    return json.dumps([r.as_json() for r in results], indent=2) + "\n"
