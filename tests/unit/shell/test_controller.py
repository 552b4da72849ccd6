"""The controller's check after a watch gap: kopf's re-listing never reports a ConfigMap deleted
during the gap, so when a Reflector lists again the API is asked whether it still exists."""

from __future__ import annotations

import asyncio
from typing import Any

from dra_kwok.shell.api import NotFound
from dra_kwok.shell.controller import Controller
from tests.unit.core.builders import config
from tests.unit.shell.builders import SETTINGS, configmap


class ConfigMapApi:
    def __init__(self, present: bool, on_get: Any = None) -> None:
        self.present = present
        self.gets: list[str] = []
        self.on_get = on_get

    async def get(self, path: str, verb: str = "get") -> Any:
        self.gets.append(path)
        if self.on_get is not None:
            await self.on_get()
        if not self.present:
            raise NotFound(404, "Not Found", "configmaps not found")
        return configmap(config())


def check(api: ConfigMapApi, loaded: bool = True) -> Controller:
    async def run() -> Controller:
        c = Controller(SETTINGS)
        if loaded:
            await c.on_configmap(None, configmap(config()))
        c.api = api  # type: ignore[assignment]
        c.ready = True
        c.on_relisted()
        c.on_relisted()  # a second Reflector's re-listing while the check runs: one check
        assert c.checking_configmap is not None
        await c.checking_configmap
        return c

    return asyncio.run(run())


def test_a_configmap_deleted_during_the_gap_is_forgotten() -> None:
    api = ConfigMapApi(present=False)
    c = check(api)
    assert api.gets == ["/api/v1/namespaces/karpenter/configmaps/dra-kwok-configmap"]
    assert not c.world.config.present
    assert c.world.sources().config.mappings == ()


def test_a_configmap_that_still_exists_stays() -> None:
    c = check(ConfigMapApi(present=True))
    assert c.world.config.present and len(c.world.sources().config.mappings) == 1


def test_an_event_for_the_configmap_during_the_check_wins() -> None:
    # Recreated (and its watch event handled) while the GET was on its way: not taken as deleted.
    holder: dict[str, Controller] = {}

    async def recreated() -> None:
        await holder["c"].on_configmap("ADDED", configmap(config()))

    api = ConfigMapApi(present=False, on_get=recreated)

    async def run() -> Controller:
        c = holder["c"] = Controller(SETTINGS)
        await c.on_configmap(None, configmap(config()))
        c.api = api  # type: ignore[assignment]
        c.ready = True
        c.on_relisted()
        assert c.checking_configmap is not None
        await c.checking_configmap
        return c

    c = asyncio.run(run())
    assert c.world.config.present


def test_no_check_before_the_controller_is_started() -> None:
    async def run() -> Controller:
        c = Controller(SETTINGS)
        c.on_relisted()
        return c

    assert asyncio.run(run()).checking_configmap is None
