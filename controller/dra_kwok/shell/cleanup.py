"""Removing everything an installation published, for uninstalling (slices are owned by Nodes,
so the garbage collector alone would keep them as long as the nodes live)."""

from __future__ import annotations

import asyncio
import logging

from ..core.render import LABEL_MANAGED_BY
from .api import SLICES_PATH, KubeApi, load_api_client

log = logging.getLogger("dra_kwok.cleanup")


async def delete_managed_slices(kubeconfig: str | None, managed_by: str, concurrency: int = 16) -> int:
    """Deletes the slices labelled `managed-by=<managed_by>`; returns how many were deleted."""
    api = KubeApi(await load_api_client(kubeconfig, concurrency), concurrency)
    try:
        items, _ = await api.list_all(SLICES_PATH, label_selector=f"{LABEL_MANAGED_BY}={managed_by}")
        results = await asyncio.gather(
            *(api.delete(SLICES_PATH, i["metadata"]["name"], i["metadata"].get("uid")) for i in items)
        )
        return sum(1 for r in results if r)
    finally:
        await api.close()
