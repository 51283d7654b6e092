"""Which endpoints doctor probes for a service-configured webhook: those of the port the
configuration calls, found by the Service port's name, ready ones only."""

from __future__ import annotations

from typing import Any

from irsa_webhook.doctor.gather import endpoints_for


def _slice(ports: list[dict[str, Any]], *endpoints: tuple[str, bool | None]) -> dict[str, Any]:
    return {
        "ports": ports,
        "endpoints": [
            {"addresses": [address], "conditions": {} if ready is None else {"ready": ready}}
            for address, ready in endpoints
        ],
    }


# The chart's Service: https (443 -> 8443) and metrics (9999), metrics listed first here.
CHART = {
    "items": [
        _slice(
            [{"name": "metrics", "port": 9999}, {"name": "https", "port": 8443}],
            ("10.88.0.5", True),
            ("10.88.0.6", False),
            ("10.88.0.7", None),
        )
    ]
}


def test_the_named_port_is_taken_not_the_first_one_listed() -> None:
    assert endpoints_for(CHART, "https") == [("10.88.0.5", 8443), ("10.88.0.7", 8443)]
    assert endpoints_for(CHART, "metrics") == [("10.88.0.5", 9999), ("10.88.0.7", 9999)]


def test_an_unnamed_single_port_matches_the_empty_name() -> None:
    slices = {"items": [_slice([{"port": 443}], ("10.0.0.1", True))]}
    assert endpoints_for(slices, "") == [("10.0.0.1", 443)]
    assert endpoints_for(slices, "https") == []


def test_a_port_the_service_does_not_have_has_no_endpoints() -> None:
    assert endpoints_for(CHART, None) == []
    assert endpoints_for({"items": []}, "https") == []


def test_slices_of_several_shards_are_joined() -> None:
    port = [{"name": "https", "port": 8443}]
    slices = {"items": [_slice(port, ("a", True)), _slice(port, ("b", True))]}
    assert endpoints_for(slices, "https") == [("a", 8443), ("b", 8443)]
