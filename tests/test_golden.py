"""Golden cases: the real ``irsa-webhook mutate`` command on our own pods, checked as objects.

Each ``tests/cases/*.yaml`` file is one case:

.. code-block:: yaml

    description: one sentence saying what a user would notice
    covers: "reference 8.2 #5" or "difference 7"  # where the expected behaviour is written down
    args: ["--aws-default-region=us-west-2"]      # optional: flags of `irsa-webhook mutate`
    serviceAccounts: [{apiVersion: v1, kind: ServiceAccount, metadata: {...}}]   # optional
    configMap: {apiVersion: v1, kind: ConfigMap, data: {config: '{...json...}'}}  # optional
    containerCredentials: {identities: [{namespace: ..., serviceAccount: ...}]}   # optional
    pod: {apiVersion: v1, kind: Pod, ...}
    expected:
      pod: {...}          # the whole pod after the patch; or instead:
      unchanged: true     # the pod comes back as given (namespace defaulted to "default")
      warnings: [...]     # optional: every "warning: " line on stderr, in order (default none)

In ``expected.pod`` the string ``"<jitter>"`` stands for an integer in [79200, 86400], the
container-credentials jitter of a one-day token (difference 5).

``covers`` names a section of docs/reference.md ("reference 8.2 #5": the reference's fixture case
5) or an entry of the README's differences from the reference ("difference 7").

For every case the command runs twice, in-process: ``--output pod`` must print the expected pod,
and ``--output patch`` must be a minimal JSON Patch that turns the input into that same pod
(difference 1). The patch text itself is never compared.
"""

from __future__ import annotations

import base64
import copy
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import pytest
import yaml

from irsa_webhook.cli import main

CASES_DIR = Path(__file__).parent / "cases"
CASE_FILES = sorted(CASES_DIR.glob("*.yaml"))
JITTER = "<jitter>"
JITTER_RANGE = range(79200, 86400 + 1)
WARNING_PREFIX = "warning: "
CASE_KEYS = {
    "description",
    "covers",
    "args",
    "serviceAccounts",
    "configMap",
    "containerCredentials",
    "pod",
    "expected",
}
EXPECTED_KEYS = {"pod", "unchanged", "warnings"}
WHOLE_LISTS = ("containers", "initContainers", "volumes")


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str
    warnings: list[str]
    other_stderr: list[str]


def load_case(path: Path) -> dict[str, Any]:
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(case, dict), f"{path.name} is not a YAML mapping"
    return case


def command_line(case: dict[str, Any], directory: Path, output: str) -> list[str]:
    """Write the case's inputs to files and return the matching ``irsa-webhook`` argv."""
    pod_file = directory / "pod.yaml"
    pod_file.write_text(yaml.safe_dump(case["pod"]), encoding="utf-8")
    argv = ["mutate", "--pod", str(pod_file), "--output", output]
    if "serviceAccounts" in case:
        accounts_file = directory / "service-accounts.yaml"
        accounts_file.write_text(yaml.safe_dump_all(case["serviceAccounts"]), encoding="utf-8")
        argv += ["--service-account", str(accounts_file)]
    if "configMap" in case:
        config_map_file = directory / "config-map.yaml"
        config_map_file.write_text(yaml.safe_dump(case["configMap"]), encoding="utf-8")
        argv += ["--config-map", str(config_map_file)]
    if "containerCredentials" in case:
        identities_file = directory / "container-credentials.json"
        identities_file.write_bytes(orjson.dumps(case["containerCredentials"]))
        argv += ["--container-credentials-config", str(identities_file)]
    return argv + list(case.get("args", []))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Outcome:
    capsys.readouterr()
    exit_code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    return Outcome(
        exit_code=exit_code,
        stdout=captured.out,
        warnings=[
            line.removeprefix(WARNING_PREFIX) for line in lines if line.startswith(WARNING_PREFIX)
        ],
        other_stderr=[line for line in lines if not line.startswith(WARNING_PREFIX)],
    )


def input_pod(case: dict[str, Any]) -> dict[str, Any]:
    """The pod as the command sees it: namespace defaulted to ``default`` like the API server."""
    pod = copy.deepcopy(case["pod"])
    metadata = pod.setdefault("metadata", {})
    metadata["namespace"] = metadata.get("namespace") or "default"
    return pod  # type: ignore[no-any-return]


def expected_pod(case: dict[str, Any]) -> dict[str, Any]:
    expected = case["expected"]
    if expected.get("unchanged"):
        return input_pod(case)
    return expected["pod"]  # type: ignore[no-any-return]


def resolve_jitter(expected: Any, actual: Any) -> Any:
    """``expected`` with each ``"<jitter>"`` replaced by the actual value when that is in range.

    An out-of-range or missing value leaves the placeholder, so the comparison shows it.
    """
    if expected == JITTER:
        in_range = isinstance(actual, int) and not isinstance(actual, bool)
        return actual if in_range and actual in JITTER_RANGE else expected
    if isinstance(expected, dict):
        actual_dict = actual if isinstance(actual, dict) else {}
        return {key: resolve_jitter(value, actual_dict.get(key)) for key, value in expected.items()}
    if isinstance(expected, list):
        actual_list = actual if isinstance(actual, list) else []
        padded = actual_list + [None] * (len(expected) - len(actual_list))
        return [resolve_jitter(value, padded[index]) for index, value in enumerate(expected)]
    return expected


def assert_same_pod(expected: dict[str, Any], actual: Any) -> None:
    """Equal as objects (for a readable diff) and as JSON (so ``true`` is not ``1``)."""
    resolved = resolve_jitter(expected, actual)
    assert resolved == actual
    sort = orjson.OPT_SORT_KEYS
    assert orjson.dumps(resolved, option=sort) == orjson.dumps(actual, option=sort)


def op_paths_into(operations: list[dict[str, Any]], prefix: str) -> list[str]:
    return [
        op["path"]
        for op in operations
        if op["path"] == prefix or op["path"].startswith(prefix + "/")
    ]


CASES = [pytest.param(path, id=path.stem) for path in CASE_FILES]


def test_there_is_a_case_for_every_reference_fixture() -> None:
    numbers = {int(path.name[4:6]) for path in CASE_FILES if path.name.startswith("ref-")}
    assert numbers >= set(range(1, 25))


@pytest.mark.parametrize("path", CASES)
def test_case_file_is_well_formed(path: Path) -> None:
    case = load_case(path)
    assert set(case) <= CASE_KEYS, f"unknown keys {set(case) - CASE_KEYS}"
    assert isinstance(case.get("description"), str)
    assert isinstance(case.get("covers"), str)
    assert case.get("pod", {}).get("kind") == "Pod"
    expected = case.get("expected")
    assert isinstance(expected, dict)
    assert set(expected) <= EXPECTED_KEYS, f"unknown keys {set(expected) - EXPECTED_KEYS}"
    assert ("pod" in expected) != bool(expected.get("unchanged")), "give pod or unchanged: true"
    if "pod" in expected:
        assert expected["pod"] != input_pod(case), "an unchanged pod is written unchanged: true"


@pytest.mark.parametrize("path", CASES)
def test_mutate_prints_the_expected_pod_and_warnings(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = load_case(path)
    outcome = run(command_line(case, tmp_path, "pod"), capsys)

    assert outcome.exit_code == 0, outcome.other_stderr
    assert_same_pod(expected_pod(case), orjson.loads(outcome.stdout))
    assert outcome.warnings == case["expected"].get("warnings", [])


@pytest.mark.parametrize("path", CASES)
def test_mutate_patch_is_minimal_and_yields_the_expected_pod(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = load_case(path)
    outcome = run(command_line(case, tmp_path, "patch"), capsys)
    assert outcome.exit_code == 0, outcome.other_stderr
    operations = orjson.loads(outcome.stdout)
    before = input_pod(case)
    wanted = expected_pod(case)

    if case["expected"].get("unchanged"):
        assert operations == []
    assert_same_pod(wanted, jsonpatch.apply_patch(before, operations))
    assert outcome.warnings == case["expected"].get("warnings", [])

    old_spec = before.get("spec", {})
    for list_name in WHOLE_LISTS:
        whole = f"/spec/{list_name}"
        for op in operations:
            if op["path"] == whole:
                assert op["op"] == "add", f"{op['op']} of the whole {list_name} list"
                assert list_name not in old_spec, f"{list_name} replaced as a whole"
    for list_name in ("containers", "initContainers"):
        old = old_spec.get(list_name) or []
        new = wanted.get("spec", {}).get(list_name) or []
        for index, (old_container, new_container) in enumerate(zip(old, new, strict=True)):
            if old_container == new_container:
                untouched = f"/spec/{list_name}/{index}"
                assert op_paths_into(operations, untouched) == [], f"{untouched} is unchanged"


def test_every_expected_warning_fits_in_one_120_character_line() -> None:
    too_long = [
        warning
        for path in CASE_FILES
        for warning in load_case(path)["expected"].get("warnings", [])
        if len(warning) >= 120 or "\n" in warning
    ]

    assert too_long == []


def _case_by_name(name: str) -> dict[str, Any]:
    return load_case(CASES_DIR / f"{name}.yaml")


def test_the_installed_command_mutates_a_pod_read_from_stdin(tmp_path: Path) -> None:
    case = _case_by_name("ref-03-pod-needs-region")
    argv = command_line(case, tmp_path, "pod")
    pod_index = argv.index("--pod") + 1
    argv[pod_index] = "-"
    script = Path(sys.executable).parent / "irsa-webhook"

    finished = subprocess.run(
        [str(script), *argv],
        input=yaml.safe_dump(case["pod"]),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr
    assert_same_pod(case["expected"]["pod"], orjson.loads(finished.stdout))
    assert finished.stderr == ""


@pytest.mark.parametrize(
    ("pod_text", "message_part"),
    [
        pytest.param(None, "cannot read", id="missing-file"),
        pytest.param("kind: Pod\nspec: [unclosed\n", "is not YAML or JSON", id="bad-yaml"),
        pytest.param(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
            "holds a Deployment, not a Pod",
            id="deployment",
        ),
        pytest.param("kind: Pod\nspec: {containers: 5}\n", "spec.containers", id="malformed-pod"),
    ],
)
def test_unreadable_pod_input_exits_2_with_one_line(
    pod_text: str | None,
    message_part: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pod_file = tmp_path / "pod.yaml"
    if pod_text is not None:
        pod_file.write_text(pod_text, encoding="utf-8")

    exit_code = main(["mutate", "--pod", str(pod_file)])

    captured = capsys.readouterr()
    assert exit_code == 2
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert captured.err.startswith("irsa-webhook: ")
    assert message_part in captured.err


def test_review_output_is_a_v1_admission_review_with_a_base64_patch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = _case_by_name("diff-warning-role-arn-not-in-arn-form")
    outcome = run(command_line(case, tmp_path, "review"), capsys)

    assert outcome.exit_code == 0
    review = orjson.loads(outcome.stdout)
    assert review["apiVersion"] == "admission.k8s.io/v1"
    assert review["kind"] == "AdmissionReview"
    response = review["response"]
    assert response["uid"]
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patch = orjson.loads(base64.b64decode(response["patch"], validate=True))
    assert_same_pod(case["expected"]["pod"], jsonpatch.apply_patch(input_pod(case), patch))
    assert response["warnings"] == case["expected"]["warnings"]


def test_review_output_for_an_unchanged_pod_has_no_patch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = _case_by_name("diff-unannotated-service-account-leaves-pod-unchanged")
    outcome = run(command_line(case, tmp_path, "review"), capsys)

    response = orjson.loads(outcome.stdout)["response"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert "patchType" not in response
