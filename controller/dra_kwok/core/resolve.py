"""Which pools a node gets: matching overlays first (Karpenter's weight and conflict rules), else
the first matching ConfigMap mapping."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .config import FallbackConfig
from .defaults import DEFAULT_KWOK_LABELS, KWOK_NODE_ANNOTATION
from .overlay import OverlayRule
from .selectors import requirements_match, selector_matches
from .validation import PoolSpec


@dataclass(frozen=True, slots=True)
class KwokNodeRule:
    """How a KWOK node is recognised: any of these annotations is present, or any label pair matches."""

    annotations: tuple[str, ...] = (KWOK_NODE_ANNOTATION,)
    labels: tuple[tuple[str, str], ...] = DEFAULT_KWOK_LABELS

    def matches(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> bool:
        return any(a in annotations for a in self.annotations) or any(labels.get(k) == v for k, v in self.labels)


@dataclass(frozen=True, slots=True)
class Conflict:
    """`overlay` lost `driver` to `winner` at the same weight, so it was not applied to the node."""

    overlay: str
    driver: str
    winner: str
    weight: int


@dataclass(frozen=True, slots=True)
class Resolution:
    """The pools a node should have, sorted by driver, and how they were chosen."""

    pools: tuple[PoolSpec, ...] = ()
    matched_overlays: tuple[str, ...] = ()
    conflicts: tuple[Conflict, ...] = field(default=())


NOTHING = Resolution()


def order_overlays(overlays: Iterable[OverlayRule]) -> list[OverlayRule]:
    """Karpenter's order: weight descending, then name descending (later in the alphabet first)."""
    by_name = sorted(overlays, key=lambda o: o.name, reverse=True)
    return sorted(by_name, key=lambda o: -o.weight)


def resolve(labels: Mapping[str, str], ordered_overlays: Sequence[OverlayRule], config: FallbackConfig) -> Resolution:
    """Resolve one node from its labels. `ordered_overlays` must come from `order_overlays`."""
    matched = [o for o in ordered_overlays if requirements_match(o.requirements, labels)]
    if not matched:
        for mapping in config.mappings:
            if selector_matches(mapping.selector, labels):
                return Resolution(pools=(mapping.pool,))
        return NOTHING
    winners: dict[str, tuple[OverlayRule, PoolSpec]] = {}
    conflicts: list[Conflict] = []
    for overlay in matched:
        clash = next(
            (
                winners[p.driver][0]
                for p in overlay.pools
                if p.driver in winners and winners[p.driver][0].weight == overlay.weight
            ),
            None,
        )
        if clash is not None:
            # Like Karpenter, a conflicting overlay is dropped whole, not per driver.
            driver = next(p.driver for p in overlay.pools if p.driver in winners and winners[p.driver][0] is clash)
            conflicts.append(Conflict(overlay.name, driver, clash.name, overlay.weight))
            continue
        for pool in overlay.pools:
            winners.setdefault(pool.driver, (overlay, pool))
    pools = tuple(winners[d][1] for d in sorted(winners))
    return Resolution(pools, tuple(o.name for o in matched), tuple(conflicts))
