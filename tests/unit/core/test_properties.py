"""Properties over generated inputs: what the core accepts renders into slices the API accepts,
what it rejects is reported with a location, and no input makes it crash."""

from __future__ import annotations

import os
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dra_kwok.core import names
from dra_kwok.core.config import EMPTY_CONFIG, load_config_data, load_config_text, parse_config_yaml, parse_yaml
from dra_kwok.core.issues import Issue, errors, format_path
from dra_kwok.core.overlay import load_overlay
from dra_kwok.core.plan import plan_node
from dra_kwok.core.quantity import parse_quantity, same_quantity
from dra_kwok.core.render import NodeRef, NodeSlices, RenderError, render, slice_manifest
from dra_kwok.core.resolve import Resolution, order_overlays, resolve
from dra_kwok.core.validation import PoolSpec
from tests import strategies as gen
from tests.api_rules import node_problems

from .fake_api import FakeSliceApi, canonical_quantities, taint_times

EXAMPLES = int(os.environ.get("DRA_KWOK_PROPERTY_EXAMPLES", "200"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CHEAP = settings(max_examples=EXAMPLES * 2, deadline=None)
# Smaller documents than the strategies' defaults keep a 200-example run quick; still enough
# devices (150) for pools spread over several slices.
CONFIGS = gen.valid_config_documents(max_devices=150, max_mappings=2, max_templates=3)
OVERLAYS = gen.valid_overlay_documents(max_devices=150, max_drivers=2, max_templates=3)


def manifests(out: NodeSlices, generation: int = 1) -> list[dict[str, Any]]:
    return [slice_manifest(s, out.node, generation) for s in out.all_slices()]


def one_pool_per_driver(pools: list[PoolSpec]) -> tuple[PoolSpec, ...]:
    by_driver: dict[str, PoolSpec] = {}
    for p in pools:
        by_driver.setdefault(p.driver, p)
    return tuple(by_driver[d] for d in sorted(by_driver))


# --- what the core accepts, the API accepts ---------------------------------------------------


@PROPERTY
@given(doc=CONFIGS, node=gen.node_names())
def test_accepted_configs_render_slices_that_satisfy_the_api_rules(doc: dict[str, Any], node: str) -> None:
    cfg, issues = load_config_data(doc)
    # Devices with bindingConditions and no simulation.binding are warned about (nobody sets them).
    assert [i for i in issues if "nothing sets them" not in i.message] == [], [str(i) for i in issues]
    assert cfg is not None and len(cfg.mappings) == len(doc["mappings"])
    ref = NodeRef(node, "uid-1")
    for mapping in cfg.mappings:
        out = render(ref, Resolution(pools=(mapping.pool,)))
        assert node_problems(manifests(out)) == []
        devices = [d["name"] for s in out.all_slices() for d in s.content.get("devices", [])]
        assert len(devices) == mapping.pool.device_count
    merged = render(ref, Resolution(pools=one_pool_per_driver([m.pool for m in cfg.mappings])))
    assert node_problems(manifests(merged, generation=3)) == []


@PROPERTY
@given(doc=CONFIGS, node=gen.node_names())
def test_accepted_configs_survive_a_yaml_round_trip(doc: dict[str, Any], node: str) -> None:
    cfg, issues = load_config_text(yaml.safe_dump(doc, allow_unicode=True))
    assert [i for i in issues if "nothing sets them" not in i.message] == [], [str(i) for i in issues]
    direct, _ = load_config_data(doc)
    assert cfg == direct


@PROPERTY
@given(doc=OVERLAYS, node=gen.node_names())
def test_accepted_overlays_render_slices_that_satisfy_the_api_rules(doc: dict[str, Any], node: str) -> None:
    rule, issues = load_overlay(doc)
    assert [i for i in issues if "nothing sets them" not in i.message] == [], [str(i) for i in issues]
    assert rule is not None
    assert rule.drivers == {t["spec"]["driver"] for t in doc["spec"]["resourceSlices"]}
    out = render(NodeRef(node, "uid-1"), Resolution(pools=rule.pools))
    assert node_problems(manifests(out)) == []
    for pool in out.pools:
        assert len({s.name for s in pool.slices}) == len(pool.slices)
        assert {s.slice_count for s in pool.slices} == {len(pool.slices)}


@PROPERTY
@given(
    doc=gen.valid_config_documents(advanced=False, max_devices=150, max_mappings=2, max_templates=3),
    node=gen.node_names(),
)
def test_basic_configs_use_no_gated_fields(doc: dict[str, Any], node: str) -> None:
    cfg, issues = load_config_data(doc)
    assert cfg is not None and [i for i in issues if "nothing sets them" not in i.message] == []
    gated = {"taints", "consumesCounters", "allowMultipleAllocations", "bindingConditions", "bindsToNode"}
    for mapping in cfg.mappings:
        for s in render(NodeRef(node, "u"), Resolution(pools=(mapping.pool,))).all_slices():
            assert "sharedCounters" not in s.content
            assert not any(gated & set(d) for d in s.content["devices"])


# --- what the core rejects is reported where it is --------------------------------------------


@PROPERTY
@given(case=gen.invalid_config_documents())
def test_invalid_configs_are_rejected_with_located_issues(case: tuple[dict[str, Any], gen.Path]) -> None:
    doc, where = case
    cfg, issues = load_config_data(doc)
    assert cfg is None
    assert_located(errors(issues), where)


@PROPERTY
@given(case=gen.invalid_overlay_documents())
def test_invalid_overlays_are_rejected_with_located_issues(case: tuple[dict[str, Any], gen.Path]) -> None:
    doc, where = case
    rule, issues = load_overlay(doc)
    assert rule is None
    assert_located(errors(issues), where)


def assert_located(errs: list[Issue], where: gen.Path) -> None:
    """At least one error, each with a path under `where`, a message, and a readable length."""
    assert errs
    for issue in errs:
        assert issue.path, str(issue)
        assert issue.message
        assert issue.path[: len(where)] == where, (format_path(where), str(issue))
        assert len(str(issue)) < 1000


# --- nothing crashes ----------------------------------------------------------------------------


@CHEAP
@given(data=gen.json_like())
def test_arbitrary_data_never_crashes_the_loaders(data: Any) -> None:
    cfg, issues = load_config_data(data)
    assert cfg is not None or errors(issues)
    rule, issues = load_overlay({"metadata": {"name": "o"}, "spec": data})
    assert rule is not None or errors(issues)
    rule, issues = load_overlay(data if isinstance(data, dict) else {"spec": data})
    assert rule is not None or errors(issues)


@PROPERTY
@given(data=st.data())
def test_corrupted_documents_never_crash_the_loaders(data: st.DataObject) -> None:
    """A valid document with one subtree replaced by arbitrary data: issues with paths, or a
    configuration that still renders (or fails to render with located issues)."""
    valid_config = data.draw(gen.valid_config_documents(max_devices=20, max_mappings=2, max_templates=2))
    cfg_doc = data.draw(gen.corrupted(valid_config))
    cfg, issues = load_config_data(cfg_doc)
    assert cfg is not None or errors(issues)
    if isinstance(cfg_doc, dict):
        assert all(i.path for i in errors(issues))
    pools = [m.pool for m in cfg.mappings] if cfg else []

    valid_overlay = data.draw(gen.valid_overlay_documents(max_devices=20, max_drivers=2, max_templates=2))
    ov_doc = data.draw(gen.corrupted(valid_overlay))
    if isinstance(ov_doc, dict):
        rule, issues = load_overlay(ov_doc)
        assert rule is not None or errors(issues)
        assert all(i.path for i in errors(issues))
        pools += rule.pools if rule else ()

    try:
        render(NodeRef("n" * 253, "u"), Resolution(pools=one_pool_per_driver(pools)))
    except RenderError as exc:
        assert exc.issues and all(i.path for i in exc.issues)


@CHEAP
@given(text=st.text(max_size=200))
def test_arbitrary_text_never_crashes_the_yaml_loader(text: str) -> None:
    cfg, issues = load_config_text(text)
    assert cfg is not None or errors(issues)


# --- names and quantities ---------------------------------------------------------------------


@CHEAP
@given(text=st.text(max_size=100))
def test_suggestions_are_always_valid(text: str) -> None:
    assert names.driver_name_problem(names.suggest_driver_name(text)) is None
    assert all(names.qualified_name_problem(s) is None for s in names.suggest_identifiers(text))
    assert names.label_value_problem(names.label_value_for(text)) is None


@CHEAP
@given(node=gen.node_names(), driver=gen.drivers(), index=st.integers(0, 20))
def test_bounded_names_are_valid_subdomains_and_keep_distinct_inputs_apart(node: str, driver: str, index: int) -> None:
    full = f"{node}-{driver}-{index}"
    name = names.bounded(full, names.DNS1123_SUBDOMAIN_MAX)
    assert names.dns_subdomain_problem(name) is None
    assert name != names.bounded(f"{node}-{driver}-{index + 1}", names.DNS1123_SUBDOMAIN_MAX)
    assert (name == full) is (len(full) <= names.DNS1123_SUBDOMAIN_MAX)


@CHEAP
@given(
    n=st.integers(0, 10**9),
    binary=st.sampled_from(
        [("Ki", "", 1024), ("Mi", "Ki", 1024), ("Gi", "Mi", 1024), ("k", "", 1000), ("M", "k", 1000)]
    ),
)
def test_quantity_respellings_compare_equal(n: int, binary: tuple[str, str, int]) -> None:
    big, small, factor = binary
    assert same_quantity(f"{n}{big}", f"{n * factor}{small}")
    assert parse_quantity(f"{n}{big}") == parse_quantity(f"{n * factor}{small}")
    assert not same_quantity(f"{n}{big}", f"{n * factor + 1}{small}")


# --- resolution and planning --------------------------------------------------------------------


@PROPERTY
@given(
    docs=st.lists(
        gen.valid_overlay_documents(advanced=False, max_devices=3, max_drivers=2, max_templates=1),
        min_size=1,
        max_size=4,
        unique_by=lambda d: d["metadata"]["name"],
    ),
    weights=st.lists(st.sampled_from([None, 1, 2]), min_size=4, max_size=4),
    driver_order=st.permutations(["a.example.com", "b.example.com", "c.example.com"]),
    labels=st.dictionaries(gen.label_names(), gen.label_values(), max_size=4),
)
def test_resolution_follows_karpenter_weight_and_conflict_rules(
    docs: list[dict[str, Any]], weights: list[int | None], driver_order: list[str], labels: dict[str, str]
) -> None:
    # Few distinct weights and drivers, so that ties and conflicts happen.
    for i, (doc, weight) in enumerate(zip(docs, weights, strict=False)):
        doc["spec"].pop("weight", None)
        doc["spec"].pop("capacity", None)
        if weight is not None:
            doc["spec"]["weight"] = weight
        renamed: dict[str, str] = {}
        for tmpl in doc["spec"]["resourceSlices"]:
            old = tmpl["spec"]["driver"]
            tmpl["spec"]["driver"] = renamed.setdefault(old, driver_order[(i + len(renamed)) % 3])
    rules = [r for r, _ in map(load_overlay, docs) if r is not None]
    assert len(rules) == len(docs)
    ordered = order_overlays(rules)
    res = resolve(labels, ordered, EMPTY_CONFIG)
    matched = {r.name: r for r in rules if r.name in res.matched_overlays}
    conflicted = {c.overlay for c in res.conflicts}
    assert [p.driver for p in res.pools] == sorted({p.driver for p in res.pools})
    for pool in res.pools:
        winner = matched[pool.source.name]
        assert winner.name not in conflicted
        rivals = [r for r in matched.values() if pool.driver in r.drivers and r.name not in conflicted]
        assert winner.weight == max(r.weight for r in rivals)
    for c in res.conflicts:
        assert matched[c.overlay].weight == matched[c.winner].weight == c.weight
        assert c.driver in matched[c.overlay].drivers and c.driver in matched[c.winner].drivers
        assert all(str(p.source) != f"overlay/{c.overlay}" for p in res.pools)
    offered = set().union(*(r.drivers for r in matched.values() if r.name not in conflicted)) if matched else set()
    assert {p.driver for p in res.pools} == offered


@PROPERTY
@given(before=CONFIGS, after=CONFIGS, node=gen.node_names(), uid_changes=st.booleans())
def test_planning_converges_and_keeps_pools_consistent(
    before: dict[str, Any], after: dict[str, Any], node: str, uid_changes: bool
) -> None:
    api = FakeSliceApi(canonical_quantities, taint_times)
    for doc, uid in ((before, "uid-1"), (after, "uid-2" if uid_changes else "uid-1"), (None, "uid-2")):
        if doc is None:
            want = None
        else:
            cfg, _ = load_config_data(doc)
            assert cfg is not None
            want = render(NodeRef(node, uid), Resolution(pools=one_pool_per_driver([m.pool for m in cfg.mappings])))
        old_generations = {o["spec"]["driver"]: o["spec"]["pool"]["generation"] for o in api.objects.values()}
        plan = plan_node(node, want, api.observed(), "dra-kwok-driver", api.written)
        api.execute(plan)
        assert plan_node(node, want, api.observed(), "dra-kwok-driver", api.written).in_sync
        assert plan_node(node, want, api.observed(), "dra-kwok-driver").in_sync  # even without the written map
        assert node_problems(api.objects.values()) == []
        for pool_plan in plan.pools:
            if pool_plan.reason == "content changed":
                assert pool_plan.generation == old_generations.get(pool_plan.driver, 0) + 1
            elif pool_plan.reason == "metadata changed":
                assert pool_plan.generation == old_generations[pool_plan.driver]
        expected = sorted(s.name for s in want.all_slices()) if want else []
        assert sorted(api.objects) == expected
    assert api.objects == {}


# --- config.yaml's fast reload path reads exactly what the general parser reads -------------------
@PROPERTY
@given(
    doc=gen.valid_config_documents(max_devices=20, max_mappings=4, max_templates=2),
    indent=st.sampled_from([2, 4]),
    flow=st.sampled_from([False, None]),
    extra=st.sampled_from(["", "# trailing comment\n", "other: 1\n", "\n\n# between\n"]),
    edit=st.integers(0, 3),
)
def test_parse_config_yaml_equals_parse_yaml(doc: dict[str, Any], indent: int, flow: bool | None, extra: str,
                                             edit: int) -> None:  # fmt: skip
    text = yaml.safe_dump(doc, indent=indent, default_flow_style=flow, sort_keys=False)
    lines = text.split("\n")
    where = min(edit * 3 + 2, len(lines) - 1)
    text = "\n".join([*lines[:where], "  # a comment" if edit % 2 else "", *lines[where:]]) + extra
    for _ in range(2):  # the second time from what the first remembered
        assert parse_config_yaml(text) == parse_yaml(text, "config.yaml")
