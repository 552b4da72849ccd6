"""An in-process stand-in for the two calls a `Reflector` makes (`WatchApi`), answering from a
script: each call takes the next step, which must be of its kind, so a test also pins the order of
listings and watches. Once the script is used up the next call raises `ScriptEnd`, a BaseException
the Reflector's retry loop does not catch: `run()` ends there and the test looks at what it did."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dra_kwok.shell.api import ApiError, Pace

Obj = dict[str, Any]


class ScriptEnd(BaseException):
    """The script has no step left (or the Reflector made a call of another kind than scripted)."""


def obj(name: str, rv: str = "") -> Obj:
    meta: Obj = {"name": name}
    if rv:
        meta["resourceVersion"] = rv
    return {"metadata": meta}


def line(event_type: str, name: str, rv: str = "") -> bytes:
    """One watch event as the apiserver streams it: a JSON object and a newline."""
    return json.dumps({"type": event_type, "object": obj(name, rv)}).encode() + b"\n"


def bookmark(rv: str) -> bytes:
    event = {"type": "BOOKMARK", "object": {"kind": "Node", "metadata": {"resourceVersion": rv}}}
    return json.dumps(event).encode() + b"\n"


def error(code: int, reason: str = "", message: str = "") -> bytes:
    status = {"kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message}
    return json.dumps({"type": "ERROR", "object": status}).encode() + b"\n"


@dataclass
class Listing:
    """A list answered with `pages` (each yielded with `resource_version`), then `error` if set."""

    pages: Sequence[Sequence[Obj]] = ()
    resource_version: str = ""
    error: ApiError | None = None


@dataclass
class Stream:
    """A watch answered with `status`; if 200, `chunks` as the body, else `body`."""

    chunks: Sequence[bytes] = ()
    status: int = 200
    reason: str = ""
    body: bytes = b""


@dataclass
class FakeContent:
    """The scripted chunks. With a `pace`, records after each chunk the pause a paced body
    (`PacedContent`) would then take, read at the same moment: once the reader handled the chunk."""

    chunks: Sequence[bytes]
    pace: Pace | None = None
    pauses: list[float] = field(default_factory=list)

    async def _iter(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
            if self.pace is not None:
                self.pauses.append(self.pace.pause_after(len(chunk)))

    def iter_any(self) -> AsyncIterator[bytes]:
        return self._iter()


@dataclass
class FakeResponse:
    status: int
    reason: str | None
    content: FakeContent
    body: bytes = b""

    async def read(self) -> bytes:
        return self.body


@dataclass
class FakeWatchApi:
    script: list[Listing | Stream]
    calls: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (verb, path, query)
    open_streams: int = 0
    contents: list[FakeContent] = field(default_factory=list)  # the body of each watch, in order

    def _next(self, kind: type[Listing] | type[Stream]) -> Listing | Stream:
        if not self.script:
            raise ScriptEnd("the script is used up")
        step = self.script.pop(0)
        if not isinstance(step, kind):
            raise ScriptEnd(f"called for a {kind.__name__}, but the next step is {step}")
        return step

    async def list_pages(
        self, path: str, label_selector: str | None = None, limit: int = 500, metadata_only: bool = False
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        query = {"labelSelector": label_selector} if label_selector else {}
        self.calls.append(("list", path, query))
        step = self._next(Listing)
        assert isinstance(step, Listing)
        for page in step.pages:
            yield [dict(o) for o in page], step.resource_version
        if step.error is not None:
            raise step.error

    @contextlib.asynccontextmanager
    async def stream(
        self,
        path: str,
        query: Mapping[str, str],
        timeout: float,
        metadata_only: bool = False,
        pace: Pace | None = None,
    ) -> AsyncIterator[FakeResponse]:
        self.calls.append(("watch", path, dict(query)))
        step = self._next(Stream)
        assert isinstance(step, Stream)
        self.open_streams += 1
        content = FakeContent(step.chunks, pace)
        self.contents.append(content)
        try:
            yield FakeResponse(step.status, step.reason, content, step.body)
        finally:
            self.open_streams -= 1

    def watched_from(self) -> list[str]:
        """The resourceVersion of every watch, in order."""
        return [q["resourceVersion"] for verb, _, q in self.calls if verb == "watch"]

    def verbs(self) -> list[str]:
        return [verb for verb, _, _ in self.calls]


class Recorder:
    """The Reflector's handler, `missing` and `relisted` callbacks: one log of what it was told,
    in order, holding what exists as the World would."""

    def __init__(self, raise_on: Iterable[str] = ()) -> None:
        self.log: list[tuple[str | None, str]] = []  # (event type, name); ("relisted", "") for the hook
        self.held: set[str] = set()
        self.raise_on = set(raise_on)  # names whose events the handler fails on (after recording them)

    def handle(self, event_type: str | None, o: Mapping[str, Any]) -> None:
        name = o["metadata"]["name"]
        self.log.append((event_type, name))
        if event_type == "DELETED":
            self.held.discard(name)
        else:
            self.held.add(name)
        if name in self.raise_on:
            raise RuntimeError(f"a bug handling {name}")

    def missing(self, listed: Iterable[str], since: float) -> list[str]:
        present = set(listed)
        return sorted(n for n in self.held if n not in present)

    def relisted(self) -> None:
        self.log.append(("relisted", ""))
