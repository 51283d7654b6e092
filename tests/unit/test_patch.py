"""``patch.diff`` yields JSON Patches that turn the old document into the new one, minimally."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from irsa_webhook.patch import escape
from patch_oracle import diff


def as_json(document: Any) -> bytes:
    """Compare documents as JSON text, so that ``True`` and ``1`` (equal in Python) differ."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def apply(old: Any, operations: list[dict[str, Any]]) -> Any:
    return jsonpatch.apply_patch(copy.deepcopy(old), operations)


ROUND_TRIPS = [
    pytest.param({"a": [1, 2]}, {"a": [1, 2, 3, 4]}, id="append-to-list"),
    pytest.param({"a": [1, 2]}, {"a": [0, 1, 2]}, id="prepend-to-list"),
    pytest.param({"a": [1, 2]}, {"a": [-1, 0, 1, 2]}, id="prepend-several"),
    pytest.param({"a": [1, 2]}, {"a": [1, 9, 2]}, id="insert-in-the-middle"),
    pytest.param({"a": []}, {"a": [{"x": 1}]}, id="append-to-empty-list"),
    pytest.param({"spec": {}}, {"spec": {"volumes": [{"name": "v"}]}}, id="create-missing-list"),
    pytest.param(
        {"spec": {"containers": [{"name": "a"}, {"name": "b", "env": [{"name": "X"}]}]}},
        {
            "spec": {
                "containers": [
                    {"name": "a"},
                    {"name": "b", "env": [{"name": "X"}, {"name": "Y"}], "volumeMounts": [{}]},
                ]
            }
        },
        id="nested-additions",
    ),
    pytest.param({}, {"a": {"b": {"c": [1]}}}, id="new-nested-object"),
    pytest.param(
        {"metadata": {"labels": {"app": "x"}}},
        {"metadata": {"labels": {"app": "x", "eks.amazonaws.com/pod-identity": "enabled"}}},
        id="key-with-slash",
    ),
    pytest.param(
        {"a~b": 1, "c/d~e": [1]}, {"a~b": 2, "c/d~e": [1, 2], "~/": {}}, id="keys-with-tilde"
    ),
    pytest.param({"a": 1, "b": 2}, {"a": 1}, id="remove-key"),
    pytest.param({"a/b": 1, "c~d": 2}, {}, id="remove-escaped-keys"),
    pytest.param({"a": [1, 2, 3]}, {"a": [1, 3]}, id="remove-list-item"),
    pytest.param({"a": [1, 2, 3]}, {"a": []}, id="empty-a-list"),
    pytest.param({"a": 1}, {"a": "1"}, id="int-to-string"),
    pytest.param({"a": True}, {"a": 1}, id="bool-to-int"),
    pytest.param({"a": 1}, {"a": 1.0}, id="int-to-float"),
    pytest.param({"a": 0}, {"a": False}, id="zero-to-false"),
    pytest.param({"a": None}, {"a": {}}, id="null-to-object"),
    pytest.param({"a": {"b": 1}}, {"a": [1]}, id="object-to-list"),
    pytest.param({"a": [1]}, {"a": {"0": 1}}, id="list-to-object"),
    pytest.param({"a": [[1], [2]]}, {"a": [[1, 5], [2]]}, id="append-in-nested-list"),
    pytest.param(1, 2, id="root-scalar"),
    pytest.param({"a": 1}, [1], id="root-type-change"),
    pytest.param([1, 2], [1, 2, 3], id="root-list-append"),
]


@pytest.mark.parametrize(("old", "new"), ROUND_TRIPS)
def test_applying_the_diff_to_the_old_document_gives_the_new_one(old: Any, new: Any) -> None:
    before = copy.deepcopy(old)

    operations = diff(old, new)

    assert as_json(apply(old, operations)) == as_json(new)
    assert old == before


@pytest.mark.parametrize(
    "document",
    [{}, {"a": [1, {"b": None}], "c": "d"}, [1, [2]], "text", None],
)
def test_equal_documents_give_an_empty_patch_even_when_not_the_same_object(document: Any) -> None:
    assert diff(document, copy.deepcopy(document)) == []


@pytest.mark.parametrize(
    ("old", "new", "operations"),
    [
        pytest.param(
            {"env": [{"name": "A"}]},
            {"env": [{"name": "A"}, {"name": "B"}, {"name": "C"}]},
            [
                {"op": "add", "path": "/env/-", "value": {"name": "B"}},
                {"op": "add", "path": "/env/-", "value": {"name": "C"}},
            ],
            id="appends-are-adds-at-the-end",
        ),
        pytest.param(
            {"volumes": [{"name": "a"}]},
            {"volumes": [{"name": "t"}, {"name": "a"}]},
            [{"op": "add", "path": "/volumes/0", "value": {"name": "t"}}],
            id="prepends-are-adds-at-the-front",
        ),
        pytest.param(
            {"c": [{"name": "a", "image": "x"}, {"name": "b"}]},
            {"c": [{"name": "a", "image": "x"}, {"name": "b", "env": []}]},
            [{"op": "add", "path": "/c/1/env", "value": []}],
            id="unchanged-siblings-are-not-touched",
        ),
        pytest.param(
            {"labels": {"a": "1"}},
            {"labels": {"a": "1", "x/y~z": "2"}},
            [{"op": "add", "path": "/labels/x~1y~0z", "value": "2"}],
            id="keys-are-escaped",
        ),
    ],
)
def test_diff_emits_only_the_operations_that_change_something(
    old: Any, new: Any, operations: list[dict[str, Any]]
) -> None:
    assert diff(old, new) == operations


@pytest.mark.parametrize(
    ("token", "escaped"),
    [("plain", "plain"), ("a/b", "a~1b"), ("a~b", "a~0b"), ("~1", "~01"), ("/~", "~1~0"), ("", "")],
)
def test_escape_follows_rfc_6901(token: str, escaped: str) -> None:
    assert escape(token) == escaped


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param({"a": [True]}, {"a": [1, 2]}, id="bool-then-append"),
        pytest.param({"a": [1]}, {"a": [1.0, 2]}, id="int-then-append"),
        pytest.param({"a": [0]}, {"a": [7, False]}, id="prepend-over-bool"),
    ],
)
def test_a_grown_list_whose_items_change_type_round_trips(old: Any, new: Any) -> None:
    assert as_json(apply(old, diff(old, new))) == as_json(new)


# Numbers and booleans are kept apart here (no bools or floats): Python's 1 == True == 1.0 hits
# the bug pinned above, and this property is about structure.
SCALARS = st.none() | st.integers(-5, 5) | st.text(alphabet="ab~/", max_size=3)
KEYS = st.text(alphabet="ab~/-0", max_size=3)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)


@st.composite
def edited(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """``value`` after random appends, prepends, insertions, removals, edits and type changes."""
    action = draw(st.sampled_from(["keep", "keep", "recurse", "replace"]))
    if action == "keep" or depth > 4:
        return value
    if action == "replace":
        return draw(DOCUMENTS)
    if isinstance(value, list):
        items = [draw(edited(item, depth + 1)) for item in value]
        change = draw(st.sampled_from(["append", "prepend", "insert", "remove", "none"]))
        extra = draw(st.lists(DOCUMENTS, min_size=1, max_size=3))
        if change == "append":
            items += extra
        elif change == "prepend":
            items = extra + items
        elif change == "insert" and items:
            position = draw(st.integers(0, len(items)))
            items[position:position] = extra
        elif change == "remove" and items:
            del items[draw(st.integers(0, len(items) - 1))]
        return items
    if isinstance(value, dict):
        result = {key: draw(edited(item, depth + 1)) for key, item in value.items()}
        for key in draw(st.lists(st.sampled_from(sorted(result)), max_size=2)) if result else []:
            result.pop(key, None)
        result.update(draw(st.dictionaries(KEYS, DOCUMENTS, max_size=2)))
        return result
    return draw(SCALARS)


@st.composite
def old_and_new(draw: st.DrawFn) -> tuple[Any, Any]:
    old = draw(DOCUMENTS)
    return old, draw(edited(old))


@given(old_and_new())
def test_diff_round_trips_for_random_edits(pair: tuple[Any, Any]) -> None:
    old, new = pair
    before = copy.deepcopy(old)

    operations = diff(old, new)

    assert as_json(apply(old, operations)) == as_json(new)
    assert old == before
    if as_json(old) == as_json(new):
        assert operations == []


@given(DOCUMENTS, DOCUMENTS)
def test_diff_round_trips_for_unrelated_documents(old: Any, new: Any) -> None:
    assert as_json(apply(old, diff(old, new))) == as_json(new)
