"""Kubernetes Events on our own objects (the ConfigMap, the DRANodeOverlays), posted in the
background so that a slow or failing Event write never holds up reconciling."""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..core.models import OVERLAY_GROUP, OVERLAY_KIND, OVERLAY_VERSION
from .api import ApiError

log = logging.getLogger("dra_kwok.events")
COMPONENT = "dra-kwok-driver"
MAX_MESSAGE = 1024  # Event.message is cut here, as kubectl shows it


class EventApi(Protocol):
    async def post(self, path: str, body: Mapping[str, Any], verb: str = "create") -> Any: ...


def now() -> str:
    """The API's time format, to the second."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def overlay_ref(name: str, uid: str) -> dict[str, Any]:
    """What an Event needs of an overlay to be shown by `kubectl describe dranodeoverlay`."""
    return {
        "apiVersion": f"{OVERLAY_GROUP}/{OVERLAY_VERSION}",
        "kind": OVERLAY_KIND,
        "metadata": {"name": name, "uid": uid},
    }


def configmap_ref(name: str, namespace: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace, "uid": uid}}


def event_body(obj: Mapping[str, Any], type_: str, reason: str, message: str, at: str) -> dict[str, Any]:
    """A core/v1 Event about `obj` (apiVersion, kind and metadata are read from it)."""
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": meta.get("namespace") or "default"},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", ""),
            "kind": obj.get("kind", ""),
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace") or None,
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "type": type_,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    }


class EventPoster:
    """Posts Events in background tasks; a failure is logged, never raised."""

    def __init__(self, api: EventApi | None = None) -> None:
        self.api = api
        self.tasks: set[asyncio.Task[None]] = set()
        self.may_post: Callable[[], bool] | None = None  # with leader election: the leader posts, a standby not

    def post(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        if self.api is None or (self.may_post is not None and not self.may_post()):
            return
        body = event_body(obj, type_, reason, message, now())
        namespace = body["metadata"]["namespace"]
        api = self.api

        async def post() -> None:
            try:
                await api.post(f"/api/v1/namespaces/{namespace}/events", body, verb="event")
            except ApiError as exc:
                log.warning("could not post event %s on %s: %s", reason, body["involvedObject"]["name"], exc)

        task = asyncio.create_task(post())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
