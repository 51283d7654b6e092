"""A command's plan: the changes it found necessary, each with how to make it. Reading the
current state and deciding is separate from acting, so ``--dry-run`` prints exactly what a real
run would do, and a second run that finds nothing to do says so."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass(frozen=True)
class Change:
    summary: str
    """One line in the imperative: ``create role arn:aws:iam::1:role/x``."""
    apply: Callable[[], None]
    detail: str = ""
    """Optional lines shown under the summary with ``--dry-run``, such as a policy's diff."""


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def add(self, summary: str, apply: Callable[[], None], detail: str = "") -> None:
        self.changes.append(Change(summary, apply, detail))

    def keep(self, what: str) -> None:
        self.unchanged.append(what)

    def extend(self, other: Plan) -> None:
        """Adds ``other``'s changes, each once: two entries in one new namespace both plan to
        create it, and it must be created once."""
        planned = {change.summary for change in self.changes}
        self.changes.extend(c for c in other.changes if c.summary not in planned)
        self.unchanged.extend(other.unchanged)

    def carry_out(self, out: TextIO, dry_run: bool) -> None:
        """Prints each unchanged item and each change; applies the changes unless ``dry_run``
        (which also prints each change's detail)."""
        for what in self.unchanged:
            print(f"unchanged: {what}", file=out)
        for change in self.changes:
            if not dry_run:
                change.apply()
            print(f"{'would' if dry_run else 'done'}: {change.summary}", file=out)
            if change.detail and dry_run:
                print(change.detail, file=out)
        if not self.changes:
            print("nothing to change", file=out)
        elif dry_run:
            print(f"dry run: {len(self.changes)} change(s) not made", file=out)


def json_diff(before: Any, after: Any, name: str) -> str:
    """A unified diff of two JSON documents, keys sorted, for a reader to review."""
    lines = difflib.unified_diff(
        json.dumps(before, indent=2, sort_keys=True).splitlines() if before is not None else [],
        json.dumps(after, indent=2, sort_keys=True).splitlines() if after is not None else [],
        f"{name} (now)",
        f"{name} (after)",
        lineterm="",
    )
    return "\n".join(f"    {line}" for line in lines)
