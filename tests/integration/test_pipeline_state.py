"""A pipeline's state is bound to its lake: one server per state folder, a log never replayed into
another lake, and catalogs sharing a lake folder never deleting each other's files."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from lakebench.core.config import Settings
from lakebench.core.errors import ConfigError
from lakebench.core.models import Event
from lakebench.lake.catalog import Lake
from lakebench.lake.compact import CompactOptions, compact
from lakebench.lake.schema import arrow_to_events
from lakebench.lake.writer import LakeWriter
from lakebench.pipeline.core import Pipeline, PipelineConfig
from lakebench.pipeline.state import StateInUse, StateOfAnotherLake, default_state_dir
from tests.integration.servers import REPO, start_server

MakeEvent = Callable[..., Event]
QUIET = {"roll_interval_s": 3600, "idle_s": 3600}


def test_a_second_server_on_the_same_state_is_refused_and_the_first_unharmed(tmp_path: Path) -> None:
    lake, state = tmp_path / "lake", tmp_path / "state"
    first = start_server(lake, state)
    try:
        command = [sys.executable, "-m", "lakebench.cli", "serve", "pipeline", "--no-auth", "--port", "0"]
        command += ["--lake", str(lake), "--state-dir", str(state)]
        second = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
        assert second.returncode == 2, second.stderr
        assert f"PID {first.proc.pid}" in second.stderr and str(state) in second.stderr
        assert "Traceback" not in second.stderr
        answer = first.post_events(
            [{"entity_ns": "a.org", "entity_id": "still here", "ts": "2025-10-04T12:00:00Z", "body": "x"}]
        )
        assert answer["accepted"] == 1
        assert first.post("/v1/flush")["committed"] == 1
    finally:
        first.stop()


def test_the_lock_is_per_process_and_released_on_stop(tmp_path: Path) -> None:
    lake = Lake(Settings(lake=str(tmp_path / "lake")))
    config = PipelineConfig(state_dir=tmp_path / "state", **QUIET)
    first = Pipeline(lake, config)
    with pytest.raises(StateInUse, match="another pipeline"):
        Pipeline(lake, config)
    first.stop(flush=False)
    Pipeline(lake, config).stop(flush=False)  # free again


def test_a_log_of_lake_a_is_never_replayed_into_lake_b(tmp_path: Path, make_event: MakeEvent) -> None:
    lake_a, lake_b = Lake(Settings(lake=str(tmp_path / "a"))), Lake(Settings(lake=str(tmp_path / "b")))
    config = PipelineConfig(state_dir=tmp_path / "state", **QUIET)
    pipeline = Pipeline(lake_a, config)
    pipeline.start()
    event = make_event()
    pipeline.submit([event])
    pipeline.stop(flush=False)  # as if killed: the event is acknowledged, only in the log
    with pytest.raises(StateOfAnotherLake, match=r"holds acknowledged events of .*/a") as refused:
        Pipeline(lake_b, config)
    assert "--lake" in str(refused.value)
    assert lake_b.table().current_snapshot() is None  # nothing of A's reached B
    again = Pipeline(lake_a, config)  # on its own lake it commits them
    again.start()
    again.stop()
    assert [e.event_id for e in arrow_to_events(lake_a.table().scan().to_arrow())] == [event.event_id]
    rebound = Pipeline(lake_b, config)  # the log is empty now: the folder may serve another lake
    rebound.stop(flush=False)


def test_the_default_state_folder_is_per_lake_and_outside_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lake_a, lake_b = Lake(Settings(lake=str(tmp_path / "a"))), Lake(Settings(lake=str(tmp_path / "b")))
    first, second = Pipeline(lake_a, PipelineConfig(**QUIET)), Pipeline(lake_b, PipelineConfig(**QUIET))
    try:
        assert first.state_dir != second.state_dir
        assert first.state_dir == default_state_dir(lake_a)
        assert not (tmp_path / ".lakebench").exists()
    finally:
        first.stop(flush=False)
        second.stop(flush=False)


def test_catalogs_sharing_a_lake_folder_keep_their_files_apart(tmp_path: Path, make_event: MakeEvent) -> None:
    folder = str(tmp_path / "lake")
    default = Lake(Settings(lake=folder))
    other = Lake(Settings(lake=folder, catalog_name="other"))
    mine, theirs = [make_event(entity_id=f"mine {i}") for i in range(3)], [make_event(entity_id="theirs")]
    for event in mine:
        LakeWriter(default).write([event])
    LakeWriter(other).write(theirs)
    assert other.data_prefix != default.data_prefix
    report = compact(default, CompactOptions(orphan_grace=timedelta(0), keep_last=1))
    assert report.merged_files == 3
    assert [e.event_id for e in arrow_to_events(other.table().scan().to_arrow())] == [theirs[0].event_id]


def test_a_second_catalog_is_refused_where_another_table_lives(tmp_path: Path, make_event: MakeEvent) -> None:
    folder = tmp_path / "lake"
    LakeWriter(Lake(Settings(lake=str(folder)))).write([make_event()])
    stranger = Lake(Settings(lake=str(folder), catalog=f"sqlite:///{tmp_path}/elsewhere.db"))
    with pytest.raises(ConfigError, match="another catalog's"):
        stranger.table()


def test_orphan_removal_spares_a_table_another_catalog_keeps_in_the_same_folder(
    tmp_path: Path, make_event: MakeEvent
) -> None:
    """Lakes written before tables had folders of their own: two catalogs on one location."""
    folder = tmp_path / "lake"
    default = Lake(Settings(lake=str(folder)))
    LakeWriter(default).write([make_event()])
    legacy = Lake(Settings(lake=str(folder), catalog=f"sqlite:///{tmp_path}/legacy.db"))
    legacy.catalog.create_namespace_if_not_exists("lakebench")
    from lakebench.lake.catalog import TABLE_PROPERTIES
    from lakebench.lake.schema import IDENTIFIER, SCHEMA, SORT_ORDER

    legacy.catalog.create_table(  # as an older lakebench did: the same location as the default catalog's
        IDENTIFIER, schema=SCHEMA, location=f"{legacy.url}/events", sort_order=SORT_ORDER, properties=TABLE_PROPERTIES
    )
    theirs = make_event(entity_id="legacy")
    LakeWriter(legacy).write([theirs])
    report = compact(default, CompactOptions(orphan_grace=timedelta(0), keep_last=1))
    assert report.deleted_files == [] and report.orphans_kept_because
    assert [e.event_id for e in arrow_to_events(legacy.table().scan().to_arrow())] == [theirs.event_id]
