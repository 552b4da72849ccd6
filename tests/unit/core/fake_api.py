"""An in-memory stand-in for the ResourceSlice API, enough to execute and re-plan `NodePlan`s.

It enforces what the apiserver would reject (changing immutable fields, deleting with a stale
UID) and can imitate what it does to stored objects (canonical quantities, taint `timeAdded`,
fields dropped by disabled feature gates).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from dra_kwok.core.plan import Apply, Delete, NodePlan, ObservedSlice

Obj = dict[str, Any]
Mutator = Callable[[Obj], None]


class Rejected(Exception):
    pass


class FakeSliceApi:
    def __init__(self, *mutators: Mutator) -> None:
        self.objects: dict[str, Obj] = {}
        self.mutators = list(mutators)
        self.written: dict[str, tuple[str, str]] = {}
        self.log: list[tuple[str, str]] = []
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)

    def apply(self, op: Apply) -> Obj:
        new = copy.deepcopy(op.manifest)
        old = self.objects.get(op.name)
        if old is not None:
            for path in (("spec", "driver"), ("spec", "nodeName"), ("spec", "pool", "name")):
                if _get(old, path) != _get(new, path):
                    raise Rejected(f"{op.name}: {'.'.join(path)} is immutable")
            new["metadata"]["uid"] = old["metadata"]["uid"]
        else:
            new["metadata"]["uid"] = f"slice-uid-{next(self._uids)}"
        new["metadata"]["resourceVersion"] = str(next(self._versions))
        for mutate in self.mutators:
            mutate(new)
        self.objects[op.name] = new
        self.written[op.name] = (new["metadata"]["resourceVersion"], op.content_print)
        self.log.append(("apply", op.name))
        return new

    def delete(self, op: Delete) -> None:
        old = self.objects.get(op.name)
        if old is None:
            raise Rejected(f"{op.name}: not found")
        if old["metadata"]["uid"] != op.uid:
            raise Rejected(f"{op.name}: uid precondition failed")
        del self.objects[op.name]
        self.log.append(("delete", op.name))

    def execute(self, plan: NodePlan, pool_order: Callable[[list[Any]], Iterable[Any]] = list) -> None:
        """Each pool's writes in their order; pools one after another, in `pool_order`."""
        for pool in pool_order(list(plan.pools)):
            for d in pool.pre_deletes:
                self.delete(d)
            for a in pool.applies:
                self.apply(a)
            for d in pool.deletes:
                self.delete(d)

    def observed(self) -> list[ObservedSlice]:
        return [ObservedSlice.from_api(o) for o in self.objects.values()]

    def put(self, obj: Obj) -> None:
        """Store an object as-is (a leftover of an earlier run)."""
        obj = copy.deepcopy(obj)
        obj["metadata"].setdefault("uid", f"slice-uid-{next(self._uids)}")
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[obj["metadata"]["name"]] = obj

    def generations(self) -> dict[str, int]:
        return {n: o["spec"]["pool"]["generation"] for n, o in sorted(self.objects.items())}


def _get(obj: Obj, path: tuple[str, ...]) -> Any:
    for part in path:
        obj = obj.get(part) or {}
    return obj


def devices_of(obj: Obj) -> list[Obj]:
    devices: list[Obj] = obj["spec"].get("devices") or []
    return devices


def canonical_quantities(obj: Obj) -> None:
    """The apiserver's canonical spelling for the quantities used in these tests."""
    respell = {"1Gi": "1024Mi", "1000m": "1", "2048Mi": "2Gi", "80Gi": "81920Mi"}
    for dev in devices_of(obj):
        for cap in (dev.get("capacity") or {}).values():
            cap["value"] = respell.get(cap["value"], cap["value"])
    for cs in obj["spec"].get("sharedCounters") or []:
        for counter in cs["counters"].values():
            counter["value"] = respell.get(counter["value"], counter["value"])


def taint_times(obj: Obj) -> None:
    for dev in devices_of(obj):
        for taint in dev.get("taints") or []:
            taint.setdefault("timeAdded", "2025-01-01T00:00:00Z")


def drop_binding_conditions(obj: Obj) -> None:
    """What a server without the DRADeviceBindingConditions gate stores."""
    for dev in devices_of(obj):
        for key in ("bindsToNode", "bindingConditions", "bindingFailureConditions"):
            dev.pop(key, None)
