"""`dra-kwok fault`: reads and writes the faults annotation of a Node for the user, with the
user's credentials (the controller itself only reads it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..core.fault_annotation import FAULTS_ANNOTATION, RequestedFault, merge_faults
from .api import NODES_PATH, KubeApi, load_api_client


def annotation_patch(value: str) -> dict[str, Any]:
    """The merge patch that sets the annotation to `value` (removes it when empty)."""
    return {"metadata": {"annotations": {FAULTS_ANNOTATION: value or None}}}


async def current_faults(kubeconfig: str | None, node: str) -> str:
    api = KubeApi(await load_api_client(kubeconfig, 2), 2)
    try:
        obj = await api.get(f"{NODES_PATH}/{node}")
        return str(((obj.get("metadata") or {}).get("annotations") or {}).get(FAULTS_ANNOTATION) or "")
    finally:
        await api.close()


async def change_faults(
    kubeconfig: str | None,
    node: str,
    additions: Sequence[RequestedFault],
    removals: Sequence[str],
    clear: bool,
    dry_run: bool,
) -> tuple[str, dict[str, Any], list[str]]:
    """Reads the node's annotation, merges the change, and (unless `dry_run`) patches it. Returns
    the new value, the patch, and problems of bad entries that were dropped."""
    api = KubeApi(await load_api_client(kubeconfig, 2), 2)
    try:
        obj = await api.get(f"{NODES_PATH}/{node}")
        current = str(((obj.get("metadata") or {}).get("annotations") or {}).get(FAULTS_ANNOTATION) or "")
        value, problems = ("", []) if clear else merge_faults(current, additions, removals, datetime.now(UTC))
        patch = annotation_patch(value)
        if not dry_run:
            await api.merge_patch(f"{NODES_PATH}/{node}", patch)
        return value, patch, problems
    finally:
        await api.close()
