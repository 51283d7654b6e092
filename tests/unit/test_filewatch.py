"""The container-credentials file source: plain rewrites, ConfigMap-volume symlink swaps, errors."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import orjson
import pytest

from irsa_webhook.filewatch import ContainerCredentialsSource
from irsa_webhook.identity import EMPTY_CONTAINER_CREDENTIALS
from irsa_webhook.metrics import Metrics

pytestmark = pytest.mark.timeout(5)


def document(*pairs: tuple[str, str]) -> bytes:
    return orjson.dumps(
        {"identities": [{"namespace": ns, "serviceAccount": sa} for ns, sa in pairs]}
    )


def test_the_first_load_reads_the_file_and_marks_the_source_synced(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(document(("a", "one")))
    metrics = Metrics()
    source = ContainerCredentialsSource(str(path), metrics=metrics)
    assert not source.synced

    source.load_once()

    assert source.synced
    assert ("a", "one") in source.current
    labels = {"source": "container-credentials"}
    assert metrics.registry.get_sample_value("irsa_webhook_cache_synced", labels) == 1
    assert metrics.registry.get_sample_value("irsa_webhook_cache_size", labels) == 1


def test_a_rewritten_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(document(("a", "one")))
    source = ContainerCredentialsSource(str(path))
    source.load_once()

    path.write_bytes(document(("a", "one"), ("b", "two")))
    source.load_once()

    assert ("b", "two") in source.current


def test_a_configmap_volume_update_by_symlink_swap_is_noticed(tmp_path: Path) -> None:
    # The kubelet's layout: dir/..<time>/file, dir/..data -> ..<time>, dir/file -> ..data/file
    first = tmp_path / "..2026_11_28_10_00_00.1"
    first.mkdir()
    (first / "config.json").write_bytes(document(("a", "one")))
    (tmp_path / "..data").symlink_to(first.name)
    (tmp_path / "config.json").symlink_to("..data/config.json")
    source = ContainerCredentialsSource(str(tmp_path / "config.json"))
    source.load_once()
    assert ("a", "one") in source.current

    # Same size, same second: only the inode of the resolved file tells the versions apart.
    second = tmp_path / "..2026_11_28_10_00_00.2"
    second.mkdir()
    (second / "config.json").write_bytes(document(("a", "two")))
    os.symlink(second.name, tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    source.load_once()

    assert ("a", "two") in source.current
    assert ("a", "one") not in source.current


def test_a_missing_file_means_no_identities_and_still_counts_as_synced(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    source = ContainerCredentialsSource(str(path))
    source.load_once()
    assert source.synced
    assert source.current is EMPTY_CONTAINER_CREDENTIALS

    path.write_bytes(document(("a", "one")))
    source.load_once()
    assert ("a", "one") in source.current

    path.unlink()
    source.load_once()
    assert source.current is EMPTY_CONTAINER_CREDENTIALS


def test_a_file_that_is_not_json_keeps_the_previous_identities_until_it_is_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(document(("a", "one")))
    source = ContainerCredentialsSource(str(path))
    source.load_once()

    path.write_bytes(b'{"identities": [')
    with caplog.at_level(logging.WARNING, logger="irsa_webhook.filewatch"):
        for _ in range(3):
            source.load_once()
    assert ("a", "one") in source.current
    assert len(caplog.records) == 1, "an unchanged broken file is reported once, not per poll"

    path.write_bytes(document(("b", "two")))
    source.load_once()
    assert ("b", "two") in source.current
    assert ("a", "one") not in source.current


def test_a_broken_file_at_start_up_means_no_identities_but_synced(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b"not json")
    source = ContainerCredentialsSource(str(path))
    source.load_once()
    assert source.synced
    assert source.current is EMPTY_CONTAINER_CREDENTIALS


def test_the_polling_loop_picks_up_a_change_within_a_few_intervals(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(document(("a", "one")))
    source = ContainerCredentialsSource(str(path), poll_interval=0.01)

    async def scenario() -> None:
        task = asyncio.create_task(source.run())
        try:
            while not source.synced:
                await asyncio.sleep(0.005)
            assert ("a", "one") in source.current
            path.write_bytes(document(("b", "two"), ("c", "three")))
            deadline = time.monotonic() + 1
            while ("b", "two") not in source.current:
                assert time.monotonic() < deadline, "the change was not picked up"
                await asyncio.sleep(0.005)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
