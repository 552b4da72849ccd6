"""An in-memory ResourceSlice API behind the reconciler's `SliceApi` Protocol: server-side apply
by name, delete with a UID precondition, get. It answers the way the apiserver does where the
reconciler depends on it: a 409 for fields another manager owns (unforced apply), a 409 for a
stale UID precondition, a 404 for what is not there, and a 422 for content a test marks refused."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from dra_kwok.shell.api import Conflict, NotFound, Rejected

Obj = dict[str, Any]


class FakeSliceApi:
    def __init__(self) -> None:
        self.objects: dict[str, Obj] = {}
        self.calls: list[tuple[str, str]] = []  # (verb, name), in order
        self.owner: dict[str, str] = {}  # slice -> field manager that owns it
        self.refuse: Callable[[Obj], str | None] = lambda obj: None  # a message: answered 422
        self.mutate: Callable[[Obj], None] = lambda obj: None  # what the server does to stored objects
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)

    async def apply(
        self, path: str, name: str, manifest: Mapping[str, Any], field_manager: str, force: bool = True
    ) -> dict[str, Any]:
        self.calls.append(("apply" if force else "apply-unforced", name))
        owner = self.owner.get(name)
        if owner is not None and owner != field_manager and not force:
            raise Conflict(409, "Conflict", f"Apply failed with 1 conflict: conflict with {owner!r}")
        message = self.refuse(dict(manifest))
        if message is not None:
            raise Rejected(422, "Unprocessable Entity", message)
        new = copy.deepcopy(dict(manifest))
        old = self.objects.get(name)
        new["metadata"]["uid"] = old["metadata"]["uid"] if old else f"uid-{next(self._uids)}"
        new["metadata"]["resourceVersion"] = str(next(self._versions))
        self.mutate(new)
        self.objects[name] = new
        self.owner[name] = field_manager
        return copy.deepcopy(new)

    async def delete(self, path: str, name: str, uid: str | None = None) -> bool:
        self.calls.append(("delete", name))
        old = self.objects.get(name)
        if old is None:
            return False
        if uid and old["metadata"]["uid"] != uid:
            raise Conflict(409, "Conflict", "Precondition failed: UID in precondition")
        del self.objects[name]
        self.owner.pop(name, None)
        return True

    async def get(self, path: str, verb: str = "get") -> Any:
        name = path.rsplit("/", 1)[-1]
        self.calls.append(("get", name))
        if name not in self.objects:
            raise NotFound(404, "Not Found", f"resourceslices {name!r} not found")
        return copy.deepcopy(self.objects[name])

    def put(self, obj: Obj, manager: str) -> Obj:
        """Store an object written by someone else (another installation, a person)."""
        obj = copy.deepcopy(obj)
        obj["metadata"].setdefault("uid", f"uid-{next(self._uids)}")
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[obj["metadata"]["name"]] = obj
        self.owner[obj["metadata"]["name"]] = manager
        return obj

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] != "get"]
