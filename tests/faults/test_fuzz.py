"""Fuzzing configuration parsing and rendering with hypothesis.

Whatever the input (arbitrary text, arbitrary JSON-like data, valid documents with a subtree
replaced by garbage), loading never raises: it returns a configuration or validation errors
(`Issue`s), never both, never neither. Whatever loads renders into pools that are complete, and
a real kube-apiserver accepts every rendered slice (server-side dry-run create, sent in parallel
batches) and returns it with the same content fingerprint the controller computed: otherwise a
restarted controller would rewrite it, and two controllers would fight over it forever.

The default run uses a few examples; `make test-slow` runs over 10,000 documents
(DRA_KWOK_FUZZ_SCALE multiplies the counts).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dra_kwok.core.config import FallbackConfig, config_text_from_configmap, load_config_data, load_config_text
from dra_kwok.core.issues import Issue, errors
from dra_kwok.core.overlay import OverlayRule, load_overlay
from dra_kwok.core.plan import fingerprint, plan_node
from dra_kwok.core.render import (
    MAX_DEVICES_PER_SLICE,
    NodeRef,
    RenderError,
    content_of,
    render,
)
from dra_kwok.core.resolve import Resolution
from dra_kwok.core.validation import PoolSpec
from tests.faults.support import SLICES, Rest
from tests.strategies import corrupted, json_like, node_names, valid_config_documents, valid_overlay_documents

SCALE = float(os.environ.get("DRA_KWOK_FUZZ_SCALE", "1"))
MANAGED_BY = "dra-kwok-fuzz"
MAX_ISSUE_TEXT = 4096


@pytest.fixture(params=[pytest.param("few", id="few"), pytest.param("many", id="many", marks=pytest.mark.slow)])
def size(request: pytest.FixtureRequest) -> str:
    """Each fuzz test runs twice: a few examples in the default set, many in the slow set."""
    return str(request.param)


def examples(few: int, many: int, size: str) -> int:
    return max(1, int((many if size == "many" else few) * SCALE))


def fuzz_settings(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# --- invariants --------------------------------------------------------------------------------


def check_loaded(result: tuple[Any, list[Issue]]) -> Any:
    """A loader's result is a configuration with no error, or None with at least one; every
    finding is an Issue whose text is bounded whatever the input."""
    loaded, issues = result
    assert isinstance(issues, list) and all(isinstance(i, Issue) for i in issues), issues
    assert (loaded is None) == bool(errors(issues)), issues
    for issue in issues:
        assert len(str(issue)) <= MAX_ISSUE_TEXT, str(issue)[:300]
    return loaded


def pools_of(loaded: FallbackConfig | OverlayRule) -> list[tuple[PoolSpec, ...]]:
    if isinstance(loaded, FallbackConfig):
        return [(m.pool,) for m in loaded.mappings]
    return [loaded.pools]


def rendered_manifests(loaded: FallbackConfig | OverlayRule, node: str) -> list[tuple[dict[str, Any], str]]:
    """(manifest, content fingerprint) of every slice each rule gives `node`; checks the pools
    are complete. A RenderError (a placeholder too long for this node) must carry Issues."""
    out = []
    ref = NodeRef(node, str(uuid.uuid4()))
    for pools in pools_of(loaded):
        try:
            slices = render(ref, Resolution(pools=pools))
        except RenderError as e:
            assert e.issues and all(isinstance(i, Issue) for i in e.issues)
            continue
        names = [s.name for s in slices.all_slices()]
        assert len(names) == len(set(names)), names
        for pool in slices.pools:
            assert {s.slice_count for s in pool.slices} == {len(pool.slices)}
            devices = [d["name"] for s in pool.slices for d in s.content.get("devices") or []]
            assert len(devices) == len(set(devices)), devices
            assert all(len(s.content.get("devices") or []) <= MAX_DEVICES_PER_SLICE for s in pool.slices)
        plan = plan_node(node, slices, [], MANAGED_BY)
        out += [(a.manifest, a.content_print) for p in plan.pools for a in p.applies]
    return out


@dataclass
class DryRun:
    """Collects rendered slices and sends them to the apiserver (dryRun=All) in parallel batches;
    failures are recorded with the document they came from, and reported at the end."""

    rest: Rest
    batch: int = 400
    pending: list[tuple[dict[str, Any], str, Any]] = field(default_factory=list)
    sent: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, manifest: dict[str, Any], print_: str, source: Any) -> None:
        self.pending.append((manifest, print_, source))
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(self._one, batch))
        self.sent += len(batch)
        self.failures += [r for r in results if r]

    def _one(self, item: tuple[dict[str, Any], str, Any]) -> str | None:
        manifest, print_, source = item
        status, body = self.rest.request(
            "POST", SLICES, query={"dryRun": "All", "fieldValidation": "Strict"}, body=manifest, ok=range(400, 600)
        )
        where = f"slice {manifest['metadata']['name'][:80]} from:\n{yaml.safe_dump(source, sort_keys=False)[:4000]}"
        if status == 409:
            return None  # a real object has that name: the name is valid, nothing else to compare
        if status != 201:
            return f"rejected ({status}): {(body or {}).get('message', body)}\n{where}"
        back = fingerprint(content_of(body["spec"]))
        if back != print_:
            return (
                f"read back with another fingerprint (a restart would rewrite it; two controllers would flap)\n"
                f"sent:     {content_of(manifest['spec'])}\nreturned: {content_of(body['spec'])}\n{where}"
            )
        return None

    def assert_all_accepted(self) -> None:
        self.flush()
        assert not self.failures, f"{len(self.failures)} of {self.sent} slices:\n\n" + "\n\n".join(self.failures[:5])


# --- parsing, no cluster -------------------------------------------------------------------------


@st.composite
def mangled_yaml(draw: st.DrawFn) -> str:
    """The YAML text of a valid document with characters deleted, duplicated or replaced."""
    text = yaml.safe_dump(draw(valid_config_documents(advanced=False, max_devices=20)), sort_keys=False)
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, max(0, len(text) - 1)))
        op = draw(st.sampled_from(["delete", "duplicate", "replace"]))
        junk = draw(st.sampled_from([":", "-", " ", "\t", "\n", "{", "[", "'", '"', "&a", "*a", "!!", "#", "|", "x"]))
        if op == "delete":
            text = text[:i] + text[i + 1 :]
        elif op == "duplicate":
            text = text[:i] + text[i : i + 20] + text[i:]
        else:
            text = text[:i] + junk + text[i + 1 :]
    return text


def parsing_cases() -> list[tuple[str, int, st.SearchStrategy[Any], Callable[[Any], Any]]]:
    """(name, examples in the default set, strategy, loader); the slow set runs 10,000 of each."""
    configmap = st.fixed_dictionaries({"data": json_like() | st.dictionaries(st.text(max_size=12), json_like())})
    return [
        ("text", 200, st.text(max_size=300), load_config_text),
        ("mangled-yaml", 30, mangled_yaml(), load_config_text),
        ("json-like-config", 200, json_like(), load_config_data),
        ("json-like-overlay", 200, st.fixed_dictionaries({"metadata": json_like(), "spec": json_like()}), load_overlay),
        ("json-like-configmap", 200, configmap, lambda cm: config_text_from_configmap(cm, "config.yaml")),
    ]


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(("name", "few", "strategy", "loader"), parsing_cases(), ids=[c[0] for c in parsing_cases()])
def test_parsing_arbitrary_input_yields_a_configuration_or_issues(
    name: str, few: int, strategy: st.SearchStrategy[Any], loader: Callable[[Any], Any], size: str
) -> None:
    @fuzz_settings(examples(few, 10_000, size))
    @given(strategy)
    def run(data: Any) -> None:
        result = loader(data)
        if name == "json-like-configmap":
            text, issues = result
            assert (text is None) == bool(issues)
            assert all(isinstance(i, Issue) for i in issues)
        else:
            check_loaded(result)

    run()


# --- corrupted documents, rendered, no cluster ---------------------------------------------------


@pytest.mark.timeout(1800)
def test_corrupted_documents_yield_issues_or_render_complete_pools(size: str) -> None:
    @fuzz_settings(examples(30, 1750, size))
    @given(valid_config_documents(max_devices=40).flatmap(corrupted), node_names())
    def configs(doc: Any, node: str) -> None:
        loaded = check_loaded(load_config_data(doc))
        if loaded is not None:
            rendered_manifests(loaded, node)

    @fuzz_settings(examples(30, 1750, size))
    @given(valid_overlay_documents(max_devices=40).flatmap(corrupted), node_names())
    def overlays(doc: Any, node: str) -> None:
        if not isinstance(doc, Mapping):
            return  # the watch only ever hands the controller objects
        loaded = check_loaded(load_overlay(doc))
        if loaded is not None:
            rendered_manifests(loaded, node)

    configs()
    overlays()


# --- valid documents, rendered and dry-run against the apiserver --------------------------------


@pytest.fixture
def dry_run(rest: Rest) -> Iterator[DryRun]:
    yield DryRun(rest)


def unexpected(issues: list[Any]) -> list[Any]:
    """All but the warning that devices with bindingConditions have nothing that sets them
    (generated devices may have them; no simulation.binding is generated)."""
    return [i for i in issues if "nothing sets them" not in i.message]


@pytest.mark.cluster
@pytest.mark.timeout(1800)
def test_valid_configurations_render_slices_the_apiserver_accepts_as_written(dry_run: DryRun, size: str) -> None:
    @fuzz_settings(examples(15, 3000, size))
    @given(valid_config_documents(max_devices=40), node_names())
    def run(doc: dict[str, Any], node: str) -> None:
        loaded, issues = load_config_text(yaml.safe_dump(doc))
        assert loaded is not None and not unexpected(issues), issues
        for manifest, print_ in rendered_manifests(loaded, node):
            dry_run.add(manifest, print_, doc)

    run()
    dry_run.assert_all_accepted()
    print(f"{dry_run.sent} slices accepted by the apiserver")


@pytest.mark.cluster
@pytest.mark.timeout(1800)
def test_valid_overlays_render_slices_the_apiserver_accepts_as_written(dry_run: DryRun, size: str) -> None:
    @fuzz_settings(examples(15, 3500, size))
    @given(valid_overlay_documents(max_devices=40), node_names())
    def run(doc: dict[str, Any], node: str) -> None:
        loaded, issues = load_overlay(doc)
        assert loaded is not None and not unexpected(issues), issues
        for manifest, print_ in rendered_manifests(loaded, node):
            dry_run.add(manifest, print_, doc)

    run()
    dry_run.assert_all_accepted()
    print(f"{dry_run.sent} slices accepted by the apiserver")
