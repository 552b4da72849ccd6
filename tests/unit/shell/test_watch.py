"""The Reflector (the controller's list+watch) against a scripted fake API, in process: what each
listing and watch event becomes, in order; 410 Gone and a kind no longer served (lists again,
reports what is missing as DELETED, then calls `relisted`); other errors (retried after a backoff);
a failing handler or hook (logged, the watch goes on). Sleeps are recorded, not slept.
The same against a real apiserver: tests/integration/test_watch.py, tests/faults/test_watch_gone.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dra_kwok.shell import metrics, watch
from dra_kwok.shell.api import BACKLOG_BYTES, NotFound, Pace, api_error
from dra_kwok.shell.watch import Reflector
from tests.unit.shell.fake_watch_api import (
    FakeWatchApi,
    Listing,
    Recorder,
    ScriptEnd,
    Stream,
    bookmark,
    error,
    line,
    obj,
)

NODES = "/api/v1/nodes"
OVERLAYS = "/apis/test.karpenter.sh/v1alpha1/dranodeoverlays"
SELECTOR = "dra-kwok-test=unit"
RELISTED = ("relisted", "")
NOT_SERVED = api_error(404, "NotFound", "the server could not find the requested resource")


class Sleeps:
    """Replaces asyncio.sleep: records each delay (and `note()` at that moment) and only yields."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.notes: list[Any] = []
        self.note: Callable[[], Any] = lambda: None


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sleeps]:
    s = Sleeps()
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, result: Any = None) -> Any:
        s.delays.append(delay)
        s.notes.append(s.note())
        await real_sleep(0)
        return result

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)  # the module watch.py calls it through
    yield s


def reflector(api: FakeWatchApi, rec: Recorder, *, optional: bool = False, hook: bool = True) -> Reflector:
    if optional:
        return Reflector(
            api, "overlay", OVERLAYS, rec.handle, rec.missing, optional=True, relisted=rec.relisted if hook else None
        )
    return Reflector(api, "node", NODES, rec.handle, rec.missing, SELECTOR, relisted=rec.relisted if hook else None)


def run_to_end(r: Reflector) -> None:
    """Runs the Reflector until the fake's script is used up."""
    with pytest.raises(ScriptEnd):
        asyncio.run(r.run())


def watch_events(kind: str) -> float:
    value: float = metrics.WATCH_EVENTS.labels(kind=kind)._value.get()
    return value


def test_the_first_listing_delivers_every_page_in_order_as_type_none_and_takes_its_resource_version() -> None:
    api = FakeWatchApi([Listing([[obj("a", "3"), obj("b", "5")], [obj("c", "4")]], "10")])
    rec = Recorder()
    rec.held.add("x")  # held already: reported DELETED, but this is no re-list
    r = reflector(api, rec)
    asyncio.run(r.list())
    assert rec.log == [(None, "a"), (None, "b"), (None, "c"), ("DELETED", "x")]
    assert r.resource_version == "10"
    assert api.calls == [("list", NODES, {"labelSelector": SELECTOR})]


def test_watch_events_are_delivered_in_order_however_the_stream_is_chunked(sleeps: Sleeps) -> None:
    split = line("MODIFIED", "b", "13")
    chunks = [
        line("ADDED", "d", "11") + line("MODIFIED", "a", "12"),  # two lines in one chunk
        split[:10],  # one line over three chunks; this one and the next have no newline
        split[10:20],
        split[20:] + line("DELETED", "c", "14")[:5],  # the end of one line and the start of another
        line("DELETED", "c", "14")[5:] + b"\n",  # and a blank line, skipped
    ]
    api = FakeWatchApi([Listing([[obj("a", "3"), obj("c", "4")]], "10"), Stream(chunks)])
    rec = Recorder()
    before = watch_events("node")
    run_to_end(reflector(api, rec))
    assert rec.log == [(None, "a"), (None, "c"), ("ADDED", "d"), ("MODIFIED", "a"), ("MODIFIED", "b"), ("DELETED", "c")]
    assert watch_events("node") - before == 4
    assert api.verbs() == ["list", "watch", "watch"]
    assert api.calls[1][2] == {
        "watch": "1",
        "resourceVersion": "10",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": str(watch.SERVER_TIMEOUT),
        "labelSelector": SELECTOR,
    }
    assert api.watched_from() == ["10", "14"]  # the stream ended (server timeout): watched again from its last event
    assert api.open_streams == 0 and sleeps.delays == []


def test_a_bookmark_moves_the_resource_version_without_a_delivery(sleeps: Sleeps) -> None:
    api = FakeWatchApi([Listing([[obj("a", "3")]], "10"), Stream([line("ADDED", "b", "11"), bookmark("15")])])
    rec = Recorder()
    before = watch_events("node")
    r = reflector(api, rec)
    run_to_end(r)
    assert rec.log == [(None, "a"), ("ADDED", "b")]
    assert watch_events("node") - before == 1
    assert api.watched_from() == ["10", "15"]
    assert r.resource_version == "15" and sleeps.delays == []


def test_a_pace_pauses_only_after_reads_that_changed_nothing_and_were_small() -> None:
    pace = Pace(0.2)
    assert pace.pause_after(2_000) == 0.2  # heartbeats: the next read waits and takes what came meanwhile
    assert pace.pause_after(BACKLOG_BYTES) == 0.0  # a backlog: pausing again would block the apiserver
    pace.read_on = True
    assert pace.pause_after(2_000) == 0.0  # a change: a burst of them is read as it comes


def test_a_paced_watch_reads_on_after_a_change_or_half_an_event_and_pauses_after_heartbeats(sleeps: Sleeps) -> None:
    """The handler says which events changed what is held; the Reflector tells the pace after each
    read, before the body decides whether to pause (the fake records that decision)."""
    rec, changing = Recorder(), {"new"}

    def handle(event_type: str | None, o: dict[str, Any]) -> bool:
        rec.handle(event_type, o)
        return str(o["metadata"]["name"]) in changing

    long_line = line("MODIFIED", "a", "14")
    heartbeats = b"".join(line("MODIFIED", "a", str(20 + i)) for i in range(BACKLOG_BYTES // len(long_line) + 1))
    chunks = [
        line("MODIFIED", "a", "11"),  # a heartbeat: pause
        line("MODIFIED", "a", "12") + line("ADDED", "new", "13"),  # a change among heartbeats: read on
        long_line[:10],  # half an event: read on for the rest
        long_line[10:],  # the rest, a heartbeat: pause
        heartbeats,  # only heartbeats, but a backlog of them: read on
    ]
    api = FakeWatchApi([Listing([[obj("a", "3")]], "10"), Stream(chunks)])
    r = Reflector(api, "node", NODES, handle, rec.missing, SELECTOR, pace=0.2)
    run_to_end(r)
    assert api.contents[0].pauses == [0.2, 0.0, 0.0, 0.2, 0.0]
    assert rec.log[:5] == [(None, "a"), ("MODIFIED", "a"), ("MODIFIED", "a"), ("ADDED", "new"), ("MODIFIED", "a")]
    assert len(rec.log) == 5 + heartbeats.count(b"\n")


def test_an_unpaced_watch_passes_no_pace_and_a_failing_handler_counts_as_a_change(
    sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeWatchApi([Listing([], "10"), Stream([line("ADDED", "b", "11")])])
    rec = Recorder()
    run_to_end(reflector(api, rec))
    assert api.contents[0].pace is None and api.contents[0].pauses == []
    rec = Recorder(raise_on={"b"})
    api = FakeWatchApi([Listing([], "10"), Stream([line("ADDED", "b", "11")])])
    run_to_end(Reflector(api, "node", NODES, rec.handle, rec.missing, SELECTOR, pace=0.2))
    assert api.contents[0].pauses == [0.0]  # not known to have changed nothing: read on


GONE_IN_STREAM = [Stream([line("ADDED", "c", "11"), error(410, "Expired", "too old resource version: 10")])]
GONE_AS_STATUS = [Stream([line("ADDED", "c", "11")]), Stream(status=410, reason="Gone")]


@pytest.mark.parametrize(("gone", "watched"), [(GONE_IN_STREAM, ["10"]), (GONE_AS_STATUS, ["10", "11"])])
def test_gone_lists_again_reports_what_is_missing_as_deleted_then_calls_relisted(
    sleeps: Sleeps, gone: list[Stream], watched: list[str]
) -> None:
    api = FakeWatchApi(
        [
            Listing([[obj("a"), obj("b")]], "10"),
            *gone,
            Listing([[obj("a"), obj("c")], [obj("d")]], "20"),
            Stream([line("MODIFIED", "a", "21"), error(410, "Expired")]),
            Listing([[obj("a")]], "30"),
        ]
    )
    rec = Recorder()
    r = reflector(api, rec)
    run_to_end(r)
    assert rec.log == [
        (None, "a"),
        (None, "b"),
        ("ADDED", "c"),
        (None, "a"),
        (None, "c"),
        (None, "d"),
        ("DELETED", "b"),
        RELISTED,
        ("MODIFIED", "a"),
        (None, "a"),
        ("DELETED", "c"),
        ("DELETED", "d"),
        RELISTED,
    ]
    assert api.watched_from() == [*watched, "20", "30"]
    assert r.resource_version == "30" and sleeps.delays == []  # 410 is no failure: listed again at once


def test_without_relisted_a_relisting_is_the_same() -> None:
    api = FakeWatchApi([Listing([[obj("a"), obj("b")]], "10"), Stream(status=410), Listing([[obj("a")]], "20")])
    rec = Recorder()
    run_to_end(reflector(api, rec, hook=False))
    assert rec.log == [(None, "a"), (None, "b"), (None, "a"), ("DELETED", "b")]
    assert api.watched_from() == ["10", "20"]


def test_other_errors_are_retried_from_the_same_resource_version_after_a_backoff(
    sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeWatchApi(
        [
            Listing([[obj("a")]], "10"),
            Stream([line("ADDED", "b", "11"), error(500, "InternalError", "etcd is slow")]),
            Stream(status=503, reason="Service Unavailable", body=b"busy"),
            Stream(status=404, reason="Not Found", body=b"no such thing"),  # not optional: an error like another
            Stream([line("MODIFIED", "b", "12")]),  # a watch that ends well resets the backoff
            Stream([error(403, "Forbidden", "no watch for you")]),
        ]
    )
    rec = Recorder()
    with caplog.at_level(logging.WARNING, "dra_kwok.watch"):
        run_to_end(reflector(api, rec))
    assert rec.log == [(None, "a"), ("ADDED", "b"), ("MODIFIED", "b")]  # no re-list, no relisted
    assert api.verbs() == ["list"] + ["watch"] * 6
    assert api.watched_from() == ["10", "11", "11", "11", "12", "12"]
    assert len(sleeps.delays) == 4
    for delay, base in zip(sleeps.delays, [1.0, 2.0, 4.0, 1.0], strict=True):
        assert 0.8 * base <= delay <= 1.2 * base, sleeps.delays
    failed = [m for m in caplog.messages if m.startswith("watch of node failed")]
    assert [m.split("(", 1)[1].rsplit(")", 1)[0] for m in failed] == [
        "500 InternalError: etcd is slow",
        "503 Service Unavailable: busy",
        "404 Not Found: no such thing",
        "403 Forbidden: no watch for you",
    ]


def test_a_listing_that_fails_part_way_is_started_again_and_is_still_the_first(sleeps: Sleeps) -> None:
    api = FakeWatchApi(
        [
            Listing([[obj("a")]], "10", error=api_error(500, "InternalError", "etcd")),
            Listing([[obj("a")], [obj("b")]], "11"),
        ]
    )
    rec = Recorder()
    rec.held.add("x")
    r = reflector(api, rec)
    run_to_end(r)
    # Nothing is reported missing after a partial listing; the complete one is the first: no relisted.
    assert rec.log == [(None, "a"), (None, "a"), (None, "b"), ("DELETED", "x")]
    assert api.verbs() == ["list", "list", "watch"] and api.watched_from() == ["11"]
    assert len(sleeps.delays) == 1


def test_an_optional_kind_not_served_counts_as_deleted_until_it_is_served_again(
    sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeWatchApi(
        [
            Listing([[obj("o1"), obj("o2")]], "10"),
            Stream([line("MODIFIED", "o1", "11")]),
            Stream(status=404, reason="Not Found"),  # the CRD was deleted
            Listing(error=NOT_SERVED),
            Listing(error=NOT_SERVED),
            Listing([[obj("o3")]], "30"),  # created again
        ]
    )
    rec = Recorder()
    r = reflector(api, rec, optional=True)
    sleeps.note = lambda: r.absent
    with caplog.at_level(logging.INFO, "dra_kwok.watch"):
        run_to_end(r)
    assert rec.log == [
        (None, "o1"),
        (None, "o2"),
        ("MODIFIED", "o1"),
        ("DELETED", "o1"),  # each reported once: the second 404 finds nothing held
        ("DELETED", "o2"),
        (None, "o3"),
        RELISTED,
    ]
    assert api.verbs() == ["list", "watch", "watch", "list", "list", "list", "watch"]
    assert api.watched_from() == ["10", "11", "30"]
    assert list(zip(sleeps.delays, sleeps.notes, strict=True)) == [(2.0, True), (4.0, True)]  # listed again, slower
    assert not r.absent and r.absent_poll == watch.ABSENT_POLL and r.resource_version == "30"
    assert sum("does not serve" in m for m in caplog.messages) == 1  # said once per transition
    assert sum("serves" in m and "again" in m for m in caplog.messages) == 1


def test_an_optional_kind_not_served_at_first_is_first_listed_when_it_is_served(sleeps: Sleeps) -> None:
    api = FakeWatchApi([Listing(error=NOT_SERVED), Listing(error=NOT_SERVED), Listing([[obj("o1")]], "5")])
    rec = Recorder()
    r = reflector(api, rec, optional=True)
    asyncio.run(r.list())  # as the controller's initial sync does
    assert r.absent and r.resource_version == "" and rec.log == []
    run_to_end(r)  # lists at once, then after ABSENT_POLL
    assert rec.log == [(None, "o1")]  # its first complete listing: no relisted
    assert sleeps.delays == [watch.ABSENT_POLL] and api.verbs() == ["list", "list", "list", "watch"]
    assert api.watched_from() == ["5"]


def test_a_kind_that_is_not_optional_raises_not_found_from_its_listing() -> None:
    api = FakeWatchApi([Listing(error=NOT_SERVED)])
    rec = Recorder()
    r = reflector(api, rec)
    with pytest.raises(NotFound):
        asyncio.run(r.list())
    assert rec.log == [] and not r.absent and r.resource_version == ""


def test_a_handler_that_raises_does_not_stop_the_listing_or_the_watch(
    sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeWatchApi(
        [
            Listing([[obj("a"), obj("b"), obj("c")]], "10"),
            Stream([line("MODIFIED", "b", "11") + line("ADDED", "d", "12")]),
        ]
    )
    rec = Recorder(raise_on={"b"})
    run_to_end(reflector(api, rec))
    assert rec.log == [(None, "a"), (None, "b"), (None, "c"), ("MODIFIED", "b"), ("ADDED", "d")]
    assert api.watched_from() == ["10", "12"] and sleeps.delays == []  # no backoff: the watch did not fail
    failed = [r for r in caplog.records if r.getMessage().startswith("handling a")]
    assert [r.getMessage() for r in failed] == [
        "handling a None event for node b failed",
        "handling a MODIFIED event for node b failed",
    ]
    assert all(r.exc_info for r in failed)


def test_relisted_that_raises_does_not_stop_the_watch(sleeps: Sleeps, caplog: pytest.LogCaptureFixture) -> None:
    api = FakeWatchApi(
        [
            Listing([[obj("a")]], "10"),
            Stream([error(410)]),
            Listing([[obj("a")]], "20"),
            Stream([line("ADDED", "b", "21"), error(410)]),
            Listing([[obj("b")]], "30"),
        ]
    )
    rec = Recorder()

    def relisted() -> None:
        rec.relisted()
        raise RuntimeError("a bug in the hook")

    r = Reflector(api, "node", NODES, rec.handle, rec.missing, relisted=relisted)
    run_to_end(r)
    assert rec.log == [(None, "a"), (None, "a"), RELISTED, ("ADDED", "b"), (None, "b"), ("DELETED", "a"), RELISTED]
    assert api.watched_from() == ["10", "20", "30"] and sleeps.delays == []
    failed = [r for r in caplog.records if "relisted" in r.getMessage()]
    assert len(failed) == 2 and all(r.exc_info for r in failed)
