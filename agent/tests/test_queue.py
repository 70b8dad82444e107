"""The outbox survives restarts and crashes, keeps order, and never reuses a sequence number."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from callvault_agent.queue import Backoff, Outbox


def beat(n: int) -> dict[str, object]:
    return {"at": f"2026-11-29T09:00:{n:02d}.000Z", "state": "active", "app": "x", "title": None}


def test_items_come_back_oldest_first_with_their_seq(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "q.sqlite3")
    seqs = [box.add_heartbeat(beat(i)) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    got = box.heartbeats(3)
    assert [h.seq for h in got] == [1, 2, 3]
    assert got[0].item == {**beat(0), "seq": 1}


def test_it_keeps_everything_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    box = Outbox(path)
    for i in range(3):
        box.add_heartbeat(beat(i))
    box.add_screenshot(taken_at="t", width=2, height=1, mime="image/webp", image=b"\x00img")
    box.close()

    again = Outbox(path)
    assert [h.seq for h in again.heartbeats(10)] == [1, 2, 3]
    shot = again.oldest_screenshot()
    assert shot is not None
    assert (shot.width, shot.height, shot.image) == (2, 1, b"\x00img")


def test_it_keeps_everything_when_the_process_dies_without_closing(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    child = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from callvault_agent.queue import Outbox
        box = Outbox(Path({str(path)!r}))
        for i in range(4):
            box.add_heartbeat({{"at": "t", "state": "idle", "app": None, "title": None}})
        os._exit(9)  # no close, no cleanup: as if killed
        """
    )
    done = subprocess.run([sys.executable, "-c", child], check=False)
    assert done.returncode == 9
    assert [h.seq for h in Outbox(path).heartbeats(10)] == [1, 2, 3, 4]


def test_a_sequence_number_is_never_reused_after_sending(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    box = Outbox(path)
    for i in range(3):
        box.add_heartbeat(beat(i))
    box.remove_heartbeats([1, 2, 3])
    box.close()
    assert Outbox(path).add_heartbeat(beat(9)) == 4


def test_renumbering_moves_queued_items_past_the_servers_last_seq(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "q.sqlite3")
    for i in range(3):
        box.add_heartbeat(beat(i))
    box.renumber_after(100)
    got = box.heartbeats(10)
    assert [h.seq for h in got] == [101, 102, 103]
    assert [h.item["at"] for h in got] == [beat(i)["at"] for i in range(3)]
    assert box.add_heartbeat(beat(4)) == 104


def test_screenshots_come_out_in_order_with_distinct_client_ids(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "q.sqlite3")
    first = box.add_screenshot(taken_at="a", width=1, height=1, mime="image/jpeg", image=b"1")
    second = box.add_screenshot(taken_at="b", width=1, height=1, mime="image/jpeg", image=b"22")
    assert first != second
    assert box.screenshot_bytes() == 3
    shot = box.oldest_screenshot()
    assert shot is not None and shot.client_id == first
    box.remove_screenshot(shot.id)
    shot = box.oldest_screenshot()
    assert shot is not None and shot.client_id == second


def test_the_queue_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    Outbox(path).close()
    assert path.stat().st_mode & 0o777 == 0o600


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_within_jitter_up_to_the_cap() -> None:
    clock = Clock()
    backoff = Backoff(base=2, cap=60, clock=clock, rng=random.Random(7))
    delays = [backoff.failed() for _ in range(8)]
    ceilings = [2, 4, 8, 16, 32, 60, 60, 60]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert not backoff.ready()
    clock.now += delays[-1]
    assert backoff.ready()


def test_backoff_jitter_spreads_agents_apart() -> None:
    firsts = set()
    for seed in range(20):
        backoff = Backoff(base=10, cap=100, clock=Clock(), rng=random.Random(seed))
        backoff.failed()
        firsts.add(round(backoff.failed(), 3))
    assert len(firsts) > 15


def test_backoff_resets_on_success_and_honours_retry_after() -> None:
    clock = Clock()
    backoff = Backoff(base=2, cap=60, clock=clock, rng=random.Random(1))
    for _ in range(5):
        backoff.failed()
    backoff.succeeded()
    assert backoff.ready() and backoff.wait() == 0
    assert backoff.failed() <= 2
    assert backoff.failed(at_least=45) == 45
    assert backoff.wait() >= 45 - 1e-9


def test_a_queue_file_of_the_first_release_is_upgraded_with_its_items(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE heartbeats (seq INTEGER PRIMARY KEY, item TEXT NOT NULL);
        CREATE TABLE screenshots (
            id INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT NOT NULL UNIQUE,
            taken_at TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
            mime TEXT NOT NULL, image BLOB NOT NULL
        );
        INSERT INTO meta VALUES ('next_seq', 8);
        INSERT INTO heartbeats VALUES (7, '{"at": "2026-11-29T09:00:00.000Z", "state": "idle"}');
        INSERT INTO screenshots (client_id, taken_at, width, height, mime, image)
            VALUES ('c1', '2026-11-29T09:00:00.000Z', 1, 1, 'image/webp', x'00');
        """
    )
    old.close()
    box = Outbox(path)
    (beat_,) = box.heartbeats(10)
    assert (beat_.seq, beat_.retimed, beat_.item["state"]) == (7, 0, "idle")
    box.retime_heartbeats({7: "2026-11-29T08:45:00.000Z"})
    (moved,) = box.heartbeats(10)
    assert (moved.seq, moved.retimed, moved.item["at"]) == (7, 1, "2026-11-29T08:45:00.000Z")
    shot = box.oldest_screenshot()
    assert shot is not None and shot.retimed == 0
    box.retime_screenshot(shot.id, "2026-11-29T08:45:00.000Z")
    again = box.oldest_screenshot()
    assert again is not None and (again.retimed, again.taken_at) == (1, "2026-11-29T08:45:00.000Z")
    assert box.add_heartbeat(beat(1)) == 8  # the sequence goes on


def test_renumbering_keeps_the_count_of_time_moves(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "q.sqlite3")
    box.add_heartbeat(beat(0))
    box.retime_heartbeats({1: "2026-11-29T08:00:00.000Z"})
    box.renumber_after(100)
    (moved,) = box.heartbeats(10)
    assert (moved.seq, moved.retimed) == (101, 1)
