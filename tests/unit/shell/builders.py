"""Watch-event bodies for the shell's in-process tests: KWOK Nodes, the ConfigMap, overlays."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import yaml

from dra_kwok.shell.settings import Settings
from tests.unit.core.builders import INSTANCE_TYPE

Obj = dict[str, Any]
SETTINGS = Settings(metrics_port=None, health_port=None)
_versions = itertools.count(1000)


def node(name: str, uid: str = "", instance_type: str = "gpu-8x", kwok: bool = True, **labels: str) -> Obj:
    all_labels = {INSTANCE_TYPE: instance_type, **labels}
    if kwok:
        all_labels["type"] = "kwok"
    return {"metadata": {"name": name, "uid": uid or f"uid-{name}", "labels": all_labels}}


def configmap(doc: Mapping[str, Any], settings: Settings = SETTINGS) -> Obj:
    return {
        "metadata": {
            "name": settings.configmap_name,
            "namespace": settings.configmap_namespace,
            "uid": "cm-uid",
            "resourceVersion": str(next(_versions)),
        },
        "data": {settings.configmap_key: yaml.safe_dump(dict(doc))},
    }


def with_meta(obj: Obj, **meta: Any) -> Obj:
    """`obj` with metadata fields added (uid, generation, resourceVersion)."""
    out = dict(obj)
    out["metadata"] = {**obj.get("metadata", {}), **meta}
    return out
