"""Which pools a node gets: KWOK detection, overlays (Karpenter weight/conflict rules), ConfigMap fallback."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from dra_kwok.core.config import EMPTY_CONFIG, FallbackConfig
from dra_kwok.core.overlay import OverlayRule
from dra_kwok.core.resolve import NOTHING, Conflict, KwokNodeRule, order_overlays, resolve
from dra_kwok.core.validation import PoolSpec

from .builders import (
    DRIVER,
    INSTANCE_TYPE,
    OTHER_DRIVER,
    config,
    device,
    load_config_ok,
    load_overlay_ok,
    mapping,
    overlay,
    requirement,
    template,
)

NODE = {INSTANCE_TYPE: "gpu-8x", "gpus": "8", "type": "kwok"}
THIRD_DRIVER = "nic.example.com"


def rule(name: str, weight: int | None = None, drivers: Sequence[str] = (DRIVER,), matches: bool = True) -> OverlayRule:
    reqs = [requirement()] if matches else [requirement(values=["other"])]
    templates = [template(d, [device(name)]) for d in drivers]
    return load_overlay_ok(overlay(name, weight=weight, requirements=reqs, templates=templates))


def fallback(*names_and_labels: tuple[str, dict[str, str]]) -> FallbackConfig:
    return load_config_ok(config(*(mapping(n, labels=labels, devices=[device(n)]) for n, labels in names_and_labels)))


def chosen(pools: Sequence[PoolSpec]) -> list[tuple[str, str]]:
    return [(p.driver, str(p.source)) for p in pools]


class TestKwokDetection:
    @pytest.mark.parametrize(
        ("labels", "annotations"),
        [
            ({}, {"kwok.x-k8s.io/node": "fake"}),
            ({"type": "kwok"}, {}),
            ({"kwok.x-k8s.io/provider": "kwok"}, {}),
        ],
    )
    def test_default_rule_recognises_kwok_nodes(self, labels: dict[str, str], annotations: dict[str, str]) -> None:
        assert KwokNodeRule().matches(labels, annotations)

    @pytest.mark.parametrize(
        ("labels", "annotations"),
        [
            ({}, {}),
            ({"type": "real"}, {}),
            ({"kwok.x-k8s.io/provider": "aws"}, {}),
            ({"kwok.x-k8s.io/node": "fake"}, {}),  # the annotation key as a label does not count
            ({}, {"type": "kwok"}),
        ],
    )
    def test_default_rule_ignores_other_nodes(self, labels: dict[str, str], annotations: dict[str, str]) -> None:
        assert not KwokNodeRule().matches(labels, annotations)

    def test_a_configured_rule_replaces_the_defaults(self) -> None:
        custom = KwokNodeRule(annotations=("example.com/fake",), labels=(("pool", "simulated"),))
        assert custom.matches({}, {"example.com/fake": ""})
        assert custom.matches({"pool": "simulated"}, {})
        assert not custom.matches({"type": "kwok"}, {"kwok.x-k8s.io/node": "fake"})

    def test_a_rule_with_nothing_matches_nothing(self) -> None:
        assert not KwokNodeRule(annotations=(), labels=()).matches({"type": "kwok"}, {"kwok.x-k8s.io/node": "fake"})


class TestOrdering:
    def test_weight_descending_then_name_descending(self) -> None:
        overlays = [rule("a", 10), rule("b"), rule("c", 10), rule("d", 5), rule("a-low"), rule("z", 10000)]
        assert [o.name for o in order_overlays(overlays)] == ["z", "c", "a", "d", "b", "a-low"]


class TestFallback:
    def test_no_overlay_and_no_mapping_gives_nothing(self) -> None:
        assert resolve(NODE, [], EMPTY_CONFIG) == NOTHING
        assert resolve(NODE, [], fallback(("m", {"zone": "a"}))) is NOTHING

    def test_first_matching_mapping_in_file_order_wins(self) -> None:
        cfg = fallback(("no", {"zone": "a"}), ("second", {"gpus": "8"}), ("third", {"type": "kwok"}))
        res = resolve(NODE, [], cfg)
        assert chosen(res.pools) == [(DRIVER, "mapping/second")]
        assert (res.matched_overlays, res.conflicts) == ((), ())

    def test_mappings_apply_only_when_no_overlay_matches(self) -> None:
        cfg = fallback(("m", {"type": "kwok"}))
        assert chosen(resolve(NODE, order_overlays([rule("o", matches=False)]), cfg).pools) == [(DRIVER, "mapping/m")]
        res = resolve(NODE, order_overlays([rule("o", drivers=(OTHER_DRIVER,))]), cfg)
        assert chosen(res.pools) == [(OTHER_DRIVER, "overlay/o")]

    def test_a_matching_overlay_without_templates_still_blocks_the_fallback(self) -> None:
        empty = load_overlay_ok(overlay("empty", templates=[]))
        res = resolve(NODE, [empty], fallback(("m", {"type": "kwok"})))
        assert res.pools == ()
        assert res.matched_overlays == ("empty",)


class TestOverlays:
    def test_highest_weight_wins_per_driver(self) -> None:
        ordered = order_overlays([rule("low", 1), rule("high", 100), rule("unset")])
        res = resolve(NODE, ordered, EMPTY_CONFIG)
        assert chosen(res.pools) == [(DRIVER, "overlay/high")]
        assert res.matched_overlays == ("high", "low", "unset")
        assert res.conflicts == ()

    def test_different_drivers_merge_across_weights(self) -> None:
        ordered = order_overlays([rule("gpu", 10, (DRIVER,)), rule("fpga", 5, (OTHER_DRIVER, DRIVER))])
        res = resolve(NODE, ordered, EMPTY_CONFIG)
        assert chosen(res.pools) == [(OTHER_DRIVER, "overlay/fpga"), (DRIVER, "overlay/gpu")]
        assert res.conflicts == ()

    def test_different_drivers_at_equal_weight_merge_without_conflict(self) -> None:
        ordered = order_overlays([rule("a", 10, (DRIVER,)), rule("b", 10, (OTHER_DRIVER,))])
        res = resolve(NODE, ordered, EMPTY_CONFIG)
        assert chosen(res.pools) == [(OTHER_DRIVER, "overlay/b"), (DRIVER, "overlay/a")]
        assert res.conflicts == ()

    def test_equal_weight_and_driver_drops_the_later_sorted_overlay_whole(self) -> None:
        # "b" sorts before "a" (name descending), so "a" is the one in conflict, with all its drivers.
        ordered = order_overlays([rule("a", 10, (DRIVER, THIRD_DRIVER)), rule("b", 10, (DRIVER,))])
        res = resolve(NODE, ordered, EMPTY_CONFIG)
        assert chosen(res.pools) == [(DRIVER, "overlay/b")]
        assert res.conflicts == (Conflict(overlay="a", driver=DRIVER, winner="b", weight=10),)
        assert res.matched_overlays == ("b", "a")

    def test_unset_weights_tie_and_conflict_by_name(self) -> None:
        res = resolve(NODE, order_overlays([rule("x"), rule("y")]), EMPTY_CONFIG)
        assert chosen(res.pools) == [(DRIVER, "overlay/y")]
        assert res.conflicts == (Conflict("x", DRIVER, "y", 0),)

    def test_a_conflict_is_only_with_an_equal_weight_winner(self) -> None:
        ordered = order_overlays([rule("top", 20), rule("mid-a", 10), rule("mid-b", 10, (DRIVER, OTHER_DRIVER))])
        res = resolve(NODE, ordered, EMPTY_CONFIG)
        # Both mid overlays lost the driver to "top" at a higher weight: no conflict, and mid-b still
        # contributes its other driver.
        assert chosen(res.pools) == [(OTHER_DRIVER, "overlay/mid-b"), (DRIVER, "overlay/top")]
        assert res.conflicts == ()

    def test_pools_are_sorted_by_driver(self) -> None:
        res = resolve(NODE, [rule("o", drivers=(THIRD_DRIVER, DRIVER, OTHER_DRIVER))], EMPTY_CONFIG)
        assert [p.driver for p in res.pools] == sorted([THIRD_DRIVER, DRIVER, OTHER_DRIVER])

    def test_overlays_that_do_not_match_are_ignored(self) -> None:
        ordered = order_overlays([rule("miss", 100, matches=False), rule("hit", 1)])
        res = resolve(NODE, ordered, EMPTY_CONFIG)
        assert chosen(res.pools) == [(DRIVER, "overlay/hit")]
        assert res.matched_overlays == ("hit",)
