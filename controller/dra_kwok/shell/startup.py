"""The startup listing: everything is listed once, before any watch starts, so the first
decisions see the whole cluster and a restart converges (deleting slices of vanished nodes and
sources, creating missing ones) without duplicates. The Reflectors made here continue from
their listing's resourceVersion."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..core.render import LABEL_MANAGED_BY
from . import metrics
from .api import NODES_PATH, OVERLAYS_PATH, SLICES_PATH, KubeApi, NotFound
from .settings import Settings
from .watch import Handler, Reflector
from .world import World


def configmap_path(settings: Settings) -> str:
    return f"/api/v1/namespaces/{settings.configmap_namespace}/configmaps/{settings.configmap_name}"


def make_reflectors(
    api: KubeApi,
    world: World,
    on_node: Handler,
    on_slice: Handler,
    on_overlay: Handler,
    relisted: Callable[[], None],
) -> list[Reflector]:
    """Nodes, our slices (by managed-by label) and the overlays (optional: the CRD may be deleted,
    or installed after us). `relisted` is told when one lists again after a watch gap."""
    missing = world.missing
    managed = f"{LABEL_MANAGED_BY}={world.settings.managed_by}"
    return [
        # Nodes by their metadata alone: labels, annotations, uid and creation time are all that is
        # read of them, and most node events are status heartbeats.
        Reflector(
            api,
            "node",
            NODES_PATH,
            on_node,
            functools.partial(missing, "node"),
            relisted=relisted,
            metadata_only=True,
            pace=world.settings.node_watch_pace,
        ),
        Reflector(api, "slice", SLICES_PATH, on_slice, functools.partial(missing, "slice"), managed, relisted=relisted),
        Reflector(
            api,
            "overlay",
            OVERLAYS_PATH,
            on_overlay,
            functools.partial(missing, "overlay"),
            optional=True,
            relisted=relisted,
        ),
    ]


async def list_everything(
    api: KubeApi,
    world: World,
    reflectors: list[Reflector],
    on_configmap: Callable[[str | None, Mapping[str, Any]], Awaitable[None]],
) -> None:
    """The Reflectors' listings, side by side (the kinds are recorded independently and nothing
    is decided until all are in, so a restart waits for the longest listing, not their sum; a
    failed one cancels the others), then the ConfigMap (absent: no fallback mappings, said once
    by the World; not counted as a reload)."""
    try:
        async with asyncio.TaskGroup() as listings:
            for reflector in reflectors:
                listings.create_task(reflector.list(), name=f"list-{reflector.kind}")
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None  # the error itself, as a serial listing raised it
    try:
        cm = await api.get(configmap_path(world.settings))
    except NotFound:
        world.on_configmap("DELETED", {})
    else:
        await on_configmap(None, cm)
    metrics.MANAGED_NODES.set(len(world.nodes))
    metrics.MANAGED_SLICES.set(len(world.slice_node))
