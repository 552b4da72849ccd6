"""The files `dra-kwok validate` and `render` read, parsed, classified and checked without I/O.

A source is its text and its name: the path as the user gave it, `-` for standard input. Its text
is a YAML stream (documents separated by `---`), and a document may be a List (`kubectl get -o
yaml`) of others. `kind_of` classifies a document: a DRANodeOverlay, a ConfigMap, a bare
config.yaml, the Helm chart's values, a DeviceClass, a Node or a List, Karpenter's NodeOverlay, or
something else. `check_stream` checks every document for a Kubernetes version (`validate`);
`config_from_text`, `overlays_from_text` and `nodes_from_text` take what `render` needs, and
`render_nodes` renders each node. Results are dataclasses holding Issues; the CLI words, prints and
counts them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from .config import (
    FallbackConfig,
    YamlDocument,
    config_text_from_configmap,
    embedded_first_line,
    load_config_data,
    parse_yaml,
    parse_yaml_documents,
)
from .defaults import DEFAULT_MANAGED_BY
from .issues import Issue, errors
from .models import OVERLAY_GROUP, OVERLAY_KIND, OVERLAY_VERSION
from .overlay import OverlayRule, load_overlay
from .plan import plan_node
from .render import NodeRef, RenderError, render
from .resolve import Conflict, KwokNodeRule, order_overlays, resolve
from .selectors import first_failing_requirement, first_failing_selector_term
from .validation import extended_resource_issues
from .versions import DEFAULT_TARGET, Target

STDIN = "-"  # the name of standard input as a source
OVERLAY_API_VERSION = f"{OVERLAY_GROUP}/{OVERLAY_VERSION}"

# What `kind_of` answers: a kind it reads, as named (READ_KINDS), or one of the four below.
READ_KINDS = ("ConfigMap", OVERLAY_KIND, "List", "NodeOverlay", "Node", "DeviceClass")
KIND_CONFIG = "config"  # a bare config.yaml: no kind, and 'driver' or 'mappings'
KIND_VALUES = "values"  # the Helm chart's values: no kind, and `config` holding config.yaml
KIND_OTHER = "other"  # any other kind (Pod, Service ...): not dra-kwok's
KIND_UNKNOWN = "unknown"  # no kind, and not a configuration either: an error
OVERLAY_KINDS = (OVERLAY_KIND, "NodeOverlay")  # read as overlays (Karpenter's, to say what to write instead)
NOT_CHECKED = (KIND_OTHER, "Node")  # kinds `validate` skips

# Rendering a node whose manifest has no UID: its slices' ownerReference names this one.
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
NOT_A_NODE = "a Node manifest (or a List of them) with metadata.name is needed"


# --- parsing and classifying --------------------------------------------------------------------
def parse_documents(text: str, name: str) -> list[YamlDocument]:
    """The YAML documents of a source, with parse errors and duplicate keys (with their lines) as
    Issues; a source without any document is an error, not "nothing wrong"."""
    docs = parse_yaml_documents(text, "stdin" if name == STDIN else name)
    if not docs:
        what = "stdin is empty" if name == STDIN else "the file holds no YAML document"
        fix = "check the command that feeds the pipe" if name == STDIN else "add the manifest, or leave the file out"
        return [YamlDocument(0, None, None, (Issue((), what, fix=fix),))]
    return docs


def child_node(node: yaml.Node | None, *keys: str | int) -> yaml.Node | None:
    """The node at `keys` under `node` (mapping keys, sequence indices), for line numbers."""
    for key in keys:
        if isinstance(node, yaml.MappingNode) and isinstance(key, str):
            node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return None
    return node


def kind_of(doc: Any) -> str:
    """One of READ_KINDS, KIND_CONFIG, KIND_VALUES, KIND_OTHER or KIND_UNKNOWN."""
    if isinstance(doc, Mapping):
        kind = doc.get("kind")
        if kind in READ_KINDS:
            return str(kind)
        if kind:
            return KIND_OTHER
        if "mappings" in doc or "driver" in doc:
            return KIND_CONFIG
        if isinstance(doc.get("config"), Mapping):
            return KIND_VALUES
    return KIND_UNKNOWN


def list_items(data: Any) -> list[Any]:
    """A List's items, or the document itself when it is not a List."""
    return data.get("items") or [] if kind_of(data) == "List" else [data]


# --- checking -----------------------------------------------------------------------------------
def not_a_dranodeoverlay(doc: Mapping[str, Any]) -> list[Issue]:
    """Karpenter's NodeOverlay, or a DRANodeOverlay of another group: say what to write instead."""
    if doc.get("kind") == "NodeOverlay":
        return [
            Issue(
                ("kind",),
                f"is Karpenter's NodeOverlay ({doc.get('apiVersion')}), which dra-kwok does not read: it has "
                "no ResourceSlice templates",
                "NodeOverlay",
                f"write a DRANodeOverlay (apiVersion: {OVERLAY_API_VERSION}, kind: {OVERLAY_KIND}) with the same "
                "requirements and weight, and the devices in spec.resourceSlices (docs/overlays.md)",
            )
        ]
    if doc.get("apiVersion") != OVERLAY_API_VERSION:
        return [
            Issue(
                ("apiVersion",),
                f"a {OVERLAY_KIND} is {OVERLAY_API_VERSION}",
                doc.get("apiVersion"),
                f"set apiVersion: {OVERLAY_API_VERSION}",
            )
        ]
    return []


def load_config_document(
    doc: Any, key: str, target: Target = DEFAULT_TARGET, node: yaml.Node | None = None, name: str = STDIN
) -> tuple[FallbackConfig | None, list[Issue]]:
    """A ConfigMap's or a bare config.yaml's configuration. Lines inside a ConfigMap's embedded
    config.yaml are counted in the source `name` when it is a block scalar (`config.yaml: |`) and
    `node` is the document's."""
    if kind_of(doc) == "ConfigMap":
        text, issues = config_text_from_configmap(doc, key)
        if text is None:
            return None, issues
        first_line = embedded_first_line(node, "data", key)
        what = name if first_line else f"data[{key!r}] (lines counted in that text)"
        data, issues = parse_yaml(text, what, first_line or 1)
        if issues:
            return None, [i.under(("data", key)) for i in issues]
        cfg, issues = load_config_data(data, target)
        return cfg, [i.under(("data", key)) for i in issues]
    return load_config_data(doc, target)


@dataclass(frozen=True, slots=True)
class DocumentCheck:
    """What `validate` found in one document: `label` names it after its source (" DRANodeOverlay/h100",
    " ConfigMap/c", " (Helm values)", "" for a bare config.yaml or an unknown document)."""

    label: str
    issues: tuple[Issue, ...]


def check_document(
    doc: Any, key: str, target: Target = DEFAULT_TARGET, node: yaml.Node | None = None, name: str = STDIN
) -> DocumentCheck:
    """Check one document of a kind dra-kwok reads for `target`; `node` and `name` give file lines
    to an embedded config.yaml. Any other document is an error (NOT_CHECKED kinds are skipped by
    `check_stream` before this)."""
    kind = kind_of(doc)
    doc_name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc, Mapping) else "?"
    if kind in OVERLAY_KINDS:
        wrong = not_a_dranodeoverlay(doc)
        return DocumentCheck(f" {kind}/{doc_name}", tuple(wrong or load_overlay(doc, target)[1]))
    if kind == "ConfigMap":
        return DocumentCheck(f" ConfigMap/{doc_name}", tuple(load_config_document(doc, key, target, node, name)[1]))
    if kind == KIND_CONFIG:
        return DocumentCheck("", tuple(load_config_document(doc, key, target, node, name)[1]))
    if kind == "DeviceClass":
        spec = doc.get("spec")
        named = isinstance(spec, Mapping) and bool(spec.get("extendedResourceName"))
        issues = extended_resource_issues(("spec", "extendedResourceName"), target) if named else []
        return DocumentCheck(f" DeviceClass/{doc_name}", tuple(issues))
    # Values that set only deviceClasses (`-f` on top of the chart's defaults) are values too.
    only_classes = kind == KIND_UNKNOWN and isinstance(doc, Mapping) and isinstance(doc.get("deviceClasses"), list)
    if kind == KIND_VALUES or only_classes:
        from .profiles.catalog import values_profile_issues

        config = doc.get("config")
        issues = [i.under(("config",)) for i in load_config_data(config, target)[1]] if config is not None else []
        classes = doc.get("deviceClasses")
        for i, dc in enumerate(classes if isinstance(classes, list) else []):
            if not isinstance(dc, Mapping):
                continue
            if dc.get("extendedResourceName"):
                issues += extended_resource_issues(("deviceClasses", i, "extendedResourceName"), target)
            if dc.get("profile"):  # as the chart reads it: an empty profile is none
                issues += values_profile_issues(dc, ("deviceClasses", i), target)
        return DocumentCheck(" (Helm values)", tuple(issues))
    got = doc.get("kind") if isinstance(doc, Mapping) else type(doc).__name__
    return DocumentCheck(
        "",
        (
            Issue(
                (),
                "not a ConfigMap, a DRANodeOverlay, a config.yaml or chart values document",
                got,
                "check the file; a bare config.yaml needs 'driver' or 'mappings'",
            ),
        ),
    )


@dataclass(frozen=True, slots=True)
class CheckedItem:
    """One document of a stream, or one item of a List document, and what `validate` found."""

    document: int  # the document's index in the stream
    item: int | None = None  # its index among the List's items; None: the document itself
    label: str = ""  # DocumentCheck.label
    issues: tuple[Issue, ...] = ()
    skipped: str | None = None  # the kind of a document that is not dra-kwok's (Pod, Node): not checked
    readable: bool = True  # False: not YAML (or a key written twice): `issues` are the parser's

    @property
    def ok(self) -> bool:
        """Checked, and without errors (warnings allowed)."""
        return self.readable and self.skipped is None and not errors(self.issues)


@dataclass(frozen=True, slots=True)
class StreamCheck:
    """Every document of a source, checked in order."""

    documents: int  # how many documents the stream holds (an empty one: 1, its error)
    items: tuple[CheckedItem, ...]

    @property
    def errors(self) -> int:
        return sum(len(errors(i.issues)) for i in self.items)


def check_stream(text: str, name: str, key: str, target: Target = DEFAULT_TARGET) -> StreamCheck:
    """`validate` on one source: each document (and each item of a List) checked for `target`,
    other kinds skipped; `key` is the ConfigMap key holding config.yaml."""
    docs = parse_documents(text, name)
    out: list[CheckedItem] = []
    for doc in docs:
        if doc.issues:
            out.append(CheckedItem(doc.index, issues=doc.issues, readable=False))
            continue
        is_list = kind_of(doc.data) == "List"
        for j, item in enumerate(list_items(doc.data)):
            index = j if is_list else None
            if kind_of(item) in NOT_CHECKED:
                out.append(CheckedItem(doc.index, index, skipped=str(item.get("kind"))))
                continue
            node = child_node(doc.node, "items", j) if is_list else doc.node
            check = check_document(item, key, target, node, name)
            out.append(CheckedItem(doc.index, index, check.label, check.issues))
    return StreamCheck(len(docs), tuple(out))


# --- what render reads --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ConfigSource:
    """`render --config`: the configuration of a source's first document (None: it has errors)."""

    config: FallbackConfig | None
    issues: tuple[Issue, ...]
    ignored: int = 0  # documents after the first, which are not read


def config_from_text(text: str, name: str, key: str, target: Target = DEFAULT_TARGET) -> ConfigSource:
    docs = parse_documents(text, name)
    doc = docs[0]
    if doc.issues:
        return ConfigSource(None, doc.issues, len(docs) - 1)
    config, issues = load_config_document(doc.data, key, target, doc.node, name)
    return ConfigSource(config, tuple(issues), len(docs) - 1)


@dataclass(frozen=True, slots=True)
class OverlayDocument:
    """One document of an `--overlay` source: its overlay (None: errors, or skipped) and findings."""

    document: int  # the document's index in the stream
    rule: OverlayRule | None = None
    issues: tuple[Issue, ...] = ()
    skipped: str | None = None  # the kind of a document that is not an overlay: not read


@dataclass(frozen=True, slots=True)
class OverlaySource:
    documents: int  # how many documents the stream holds
    items: tuple[OverlayDocument, ...]

    @property
    def rules(self) -> list[OverlayRule]:
        return [d.rule for d in self.items if d.rule is not None]

    @property
    def failed(self) -> bool:
        return any(errors(d.issues) for d in self.items)


def overlays_from_text(text: str, name: str, target: Target = DEFAULT_TARGET) -> OverlaySource:
    """`render --overlay`: each DRANodeOverlay of a source, checked for `target`; other kinds are
    skipped, Karpenter's NodeOverlay is an error that says what to write instead."""
    docs = parse_documents(text, name)
    out: list[OverlayDocument] = []
    for doc in docs:
        kind = kind_of(doc.data)
        if not doc.issues and kind not in OVERLAY_KINDS:
            out.append(OverlayDocument(doc.index, skipped=str(doc.data.get("kind")) if kind == KIND_OTHER else kind))
            continue
        rule: OverlayRule | None = None
        issues = list(doc.issues) or not_a_dranodeoverlay(doc.data)
        if not issues:
            rule, issues = load_overlay(doc.data, target)
        out.append(OverlayDocument(doc.index, rule, tuple(issues)))
    return OverlaySource(len(docs), tuple(out))


@dataclass(frozen=True, slots=True)
class NodeSource:
    """`render --node`: the Node manifests of a source, or why there are none to render: the first
    document's parse errors (`issues`), or a document that is not a Node (`not_a_node`)."""

    nodes: tuple[Mapping[str, Any], ...] = ()
    issues: tuple[Issue, ...] = ()
    not_a_node: bool = False

    @property
    def ok(self) -> bool:
        return not self.issues and not self.not_a_node


def nodes_from_text(text: str, name: str) -> NodeSource:
    """Nodes, or a List of them (`kubectl get nodes -o yaml`), each with metadata.name."""
    nodes: list[Mapping[str, Any]] = []
    for doc in parse_documents(text, name):
        if doc.issues:
            return NodeSource(issues=doc.issues)
        for item in list_items(doc.data):
            meta = item.get("metadata") if isinstance(item, Mapping) else None
            if not isinstance(meta, Mapping) or not meta.get("name") or item.get("kind", "Node") != "Node":
                return NodeSource(not_a_node=True)
            nodes.append(item)
    return NodeSource(tuple(nodes))


# --- rendering ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NoMatch:
    """Why an overlay or a mapping does not apply to a node: its first failing requirement or term."""

    source: str  # "overlay" or "mapping"
    name: str
    reason: str | None


def why_no_match(labels: Mapping[str, str], overlays: Sequence[OverlayRule], config: FallbackConfig) -> list[NoMatch]:
    """For each overlay (in the order given) and then each mapping, the first requirement or
    selector term the node fails."""
    out = [NoMatch("overlay", o.name, first_failing_requirement(o.requirements, labels)) for o in overlays]
    out += [NoMatch("mapping", m.name, first_failing_selector_term(m.selector, labels)) for m in config.mappings]
    return out


@dataclass(frozen=True, slots=True)
class PoolSummary:
    """One rendered pool of a node, for its summary line."""

    driver: str
    slices: int
    devices: int
    source: str  # "overlay/<name>" or "mapping/<name>"


@dataclass(frozen=True, slots=True)
class NodeRender:
    """What `render` makes of one node. Unless it is a KWOK node (`kwok`) that an overlay or mapping
    matches (`matched`; else `no_match` says why, one entry per overlay and mapping) and its
    templates render without errors (`issues`), it gets no manifests."""

    name: str
    kwok: bool = True
    matched: bool = False
    no_match: tuple[NoMatch, ...] = ()
    issues: tuple[Issue, ...] = ()
    pools: tuple[PoolSummary, ...] = ()
    conflicts: tuple[Conflict, ...] = ()  # overlays dropped for a driver another took at the same weight
    manifests: tuple[dict[str, Any], ...] = ()  # the ResourceSlices the driver would apply

    @property
    def ok(self) -> bool:
        return not self.issues


def render_node(
    node: Mapping[str, Any],
    ordered_overlays: Sequence[OverlayRule],
    config: FallbackConfig,
    target: Target = DEFAULT_TARGET,
    kwok_nodes: KwokNodeRule | None = None,
    managed_by: str = DEFAULT_MANAGED_BY,
) -> NodeRender:
    """One Node manifest (with metadata.name) through resolve, render and plan, as the controller
    would publish for it; `ordered_overlays` come from `order_overlays`, `kwok_nodes` tells KWOK
    nodes (default: the controller's default rule)."""
    meta = node["metadata"]
    name = meta["name"]
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    if not (kwok_nodes or KwokNodeRule()).matches(labels, meta.get("annotations") or {}):
        return NodeRender(name, kwok=False)
    resolution = resolve(labels, ordered_overlays, config)
    if not resolution.pools:
        return NodeRender(name, no_match=tuple(why_no_match(labels, ordered_overlays, config)))
    ref = NodeRef(name, meta.get("uid") or PLACEHOLDER_UID)
    try:
        slices = render(ref, resolution, target.limits)
    except RenderError as exc:
        return NodeRender(name, matched=True, issues=tuple(exc.issues), conflicts=resolution.conflicts)
    pools = tuple(
        PoolSummary(
            pool.driver,
            len(pool.slices),
            sum(len(s.content.get("devices", [])) for s in pool.slices),
            pool.source,
        )
        for pool in slices.pools
    )
    plan = plan_node(name, slices, [], managed_by)
    manifests = tuple(a.manifest for p in plan.pools for a in p.applies)
    return NodeRender(name, matched=True, pools=pools, conflicts=resolution.conflicts, manifests=manifests)


def render_nodes(
    nodes: Sequence[Mapping[str, Any]],
    overlays: Sequence[OverlayRule],
    config: FallbackConfig,
    target: Target = DEFAULT_TARGET,
) -> list[NodeRender]:
    """`render_node` for each node, the overlays in Karpenter's order."""
    ordered = order_overlays(overlays)
    return [render_node(node, ordered, config, target) for node in nodes]
