"""A general JSON Patch differ: the oracle the mutation's own patch must agree with.

The webhook used it on the hot path until the mutation learnt to emit its operations directly
(three times cheaper); it stays here so every test can check that the emitted patch is exactly
what a minimal diff of the input and the mutated pod gives.

Parts the new document shares with the old one are skipped by identity checks. Lists get
``add`` operations when items were appended or prepended and element-wise diffs when their length
is unchanged; any other change replaces that one list. Nothing outside what changed is touched.
"""

from __future__ import annotations

from operator import is_
from typing import Any

from irsa_webhook.patch import Operation, escape

_MISSING = object()


def diff(old: Any, new: Any) -> list[Operation]:
    """Operations that turn ``old`` into ``new``; empty when they are equal."""
    operations: list[Operation] = []
    _diff(old, new, "", operations)
    return operations


def _diff(old: Any, new: Any, path: str, operations: list[Operation]) -> None:
    if old is new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        _diff_objects(old, new, path, operations)
    elif isinstance(old, list) and isinstance(new, list):
        _diff_lists(old, new, path, operations)
    elif not _same(old, new):
        operations.append({"op": "replace", "path": path, "value": new})


def _diff_objects(
    old: dict[str, Any], new: dict[str, Any], path: str, operations: list[Operation]
) -> None:
    # Values shared by the copy-on-write mutation are skipped in one C-level pass: nothing
    # below them changed. Only the few keys left are walked.
    changed = [key for key, value in new.items() if old.get(key, _MISSING) is not value]
    for key in changed:
        value = new[key]
        child = f"{path}/{escape(key)}"
        if key not in old:
            operations.append({"op": "add", "path": child, "value": value})
        else:
            _diff(old[key], value, child, operations)
    if not old.keys() <= new.keys():
        operations.extend(
            {"op": "remove", "path": f"{path}/{escape(key)}"} for key in old if key not in new
        )


def _diff_lists(old: list[Any], new: list[Any], path: str, operations: list[Operation]) -> None:
    kept = len(old)
    if kept == len(new):
        for index, (old_item, new_item) in enumerate(zip(old, new, strict=True)):
            if old_item is not new_item:
                _diff(old_item, new_item, f"{path}/{index}", operations)
        return
    grown = len(new) - kept
    if grown > 0:
        # Identity first: the mutation appends to or prepends onto the very same items, so the
        # deep comparison is needed only for pods built some other way.
        if all(map(is_, old, new)):
            appended = True
        elif all(map(is_, old, new[grown:])):
            appended = False
        elif _same_items(old, new[:kept]):
            appended = True
        elif _same_items(old, new[grown:]):
            appended = False
        else:
            operations.append({"op": "replace", "path": path, "value": new})
            return
        if appended:
            end = f"{path}/-"
            operations += [{"op": "add", "path": end, "value": item} for item in new[kept:]]
        else:
            operations += [
                {"op": "add", "path": f"{path}/{index}", "value": item}
                for index, item in enumerate(new[:grown])
            ]
        return
    operations.append({"op": "replace", "path": path, "value": new})


def _same_items(old: list[Any], new: list[Any]) -> bool:
    return all(a is b or _same(a, b) for a, b in zip(old, new, strict=True))


def _same(old: Any, new: Any) -> bool:
    """JSON equality: unlike ``==``, ``true`` is not ``1`` and ``1`` is not ``1.0``."""
    if type(old) is not type(new):
        return False
    if isinstance(old, dict):
        return old.keys() == new.keys() and all(_same(old[key], new[key]) for key in old)
    if isinstance(old, list):
        return len(old) == len(new) and all(_same(a, b) for a, b in zip(old, new, strict=True))
    return bool(old == new)
