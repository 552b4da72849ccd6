"""core.documents: the files of `validate` and `render` parsed, classified, checked and rendered
from text, without files, printing or exit codes (tests/unit/test_cli.py covers what is printed)."""

from __future__ import annotations

from dra_kwok.core.config import FallbackConfig
from dra_kwok.core.documents import (
    KIND_CONFIG,
    KIND_OTHER,
    KIND_UNKNOWN,
    KIND_VALUES,
    STDIN,
    check_stream,
    config_from_text,
    kind_of,
    nodes_from_text,
    overlays_from_text,
    render_nodes,
)
from dra_kwok.core.issues import errors, format_path
from dra_kwok.core.render import LABEL_MANAGED_BY
from dra_kwok.core.versions import target

OVERLAY = """\
apiVersion: test.karpenter.sh/v1alpha1
kind: DRANodeOverlay
metadata: {name: h100}
spec:
  weight: 10
  requirements:
  - {key: node.kubernetes.io/instance-type, operator: In, values: [g5.48xlarge]}
  resourceSlices:
  - spec:
      driver: gpu.example.com
      devices: [{name: gpu, count: 8}]
"""
CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: fallback}
data:
  config.yaml: |
    driver: gpu.example.com
    mappings:
    - name: t4
      nodeSelector: {matchLabels: {accelerator: t4}}
      resourceSlice: {devices: [{name: t4, cont: 2}]}
"""


def test_kinds() -> None:
    assert kind_of({"kind": "DRANodeOverlay"}) == "DRANodeOverlay"
    assert kind_of({"kind": "Pod"}) == KIND_OTHER
    assert kind_of({"driver": "gpu.example.com"}) == KIND_CONFIG
    assert kind_of({"config": {"mappings": []}}) == KIND_VALUES
    assert kind_of({"replicaCount": 1}) == kind_of([1, 2]) == KIND_UNKNOWN


def test_a_stream_with_an_overlay_a_configmap_and_a_pod_is_checked_document_by_document() -> None:
    stream = check_stream(f"{OVERLAY}---\n{CONFIGMAP}---\nkind: Pod\nmetadata: {{name: p}}\n", "f.yaml", "config.yaml")
    assert stream.documents == 3
    overlay, configmap, pod = stream.items
    assert (overlay.document, overlay.label, overlay.issues, overlay.ok) == (0, " DRANodeOverlay/h100", (), True)
    assert (configmap.document, configmap.label, configmap.ok) == (1, " ConfigMap/fallback", False)
    (issue,) = configmap.issues
    assert format_path(issue.path) == "data['config.yaml'].mappings[0].resourceSlice.devices[0].cont"
    assert (issue.message, issue.fix) == ("unknown field", "did you mean 'count'?")
    assert (pod.document, pod.skipped, pod.issues) == (2, "Pod", ())
    assert stream.errors == 1


def test_the_items_of_a_list_are_checked_one_by_one() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n- {kind: Service}\n- {foo: bar}\n"
    service, unknown = check_stream(text, "l.yaml", "config.yaml").items
    assert (service.item, service.skipped) == (0, "Service")
    assert unknown.item == 1 and not unknown.ok
    assert str(unknown.issues[0]) == (
        "<root>: not a ConfigMap, a DRANodeOverlay, a config.yaml or chart values document; "
        "fix: check the file; a bare config.yaml needs 'driver' or 'mappings'"
    )


def test_an_invalid_overlay_names_the_field_the_value_and_the_fix() -> None:
    text = OVERLAY.replace("driver: gpu.example.com", "driver: gpu.example.com/dra")
    (item,) = check_stream(text, "o.yaml", "config.yaml").items
    (issue,) = errors(item.issues)
    assert format_path(issue.path) == "spec.resourceSlices[0].spec.driver"
    assert issue.value == "gpu.example.com/dra"
    assert issue.fix == "use 'gpu.example.com.dra'"


def test_a_feature_the_version_lacks_is_an_error_for_that_version_only() -> None:
    text = OVERLAY.replace("[{name: gpu, count: 8}]", "[{name: gpu, taints: [{key: k, effect: NoSchedule}]}]")
    assert check_stream(text, "o.yaml", "config.yaml").errors == 0
    (item,) = check_stream(text, "o.yaml", "config.yaml", target("1.34")).items
    assert "Kubernetes 1.34 drops device taints" in str(errors(item.issues)[0])


def test_unreadable_and_empty_sources() -> None:
    (broken,) = check_stream("a: [\n", "b.yaml", "config.yaml").items
    assert not broken.readable and "b.yaml is not valid YAML at line 2" in broken.issues[0].message
    (empty,) = check_stream("", STDIN, "config.yaml").items
    assert empty.issues[0].message == "stdin is empty"


def test_karpenters_nodeoverlay_is_an_error_and_other_kinds_are_skipped_as_overlays() -> None:
    text = f"apiVersion: karpenter.sh/v1alpha1\nkind: NodeOverlay\nmetadata: {{name: n}}\n---\n{CONFIGMAP}"
    source = overlays_from_text(text, "o.yaml", target("1.37"))
    karpenter, configmap = source.items
    assert karpenter.rule is None and karpenter.issues[0].path == ("kind",)
    assert "write a DRANodeOverlay" in (karpenter.issues[0].fix or "")
    assert configmap.skipped == "ConfigMap"
    assert source.failed and source.rules == []


def test_render_config_reads_the_first_document_only() -> None:
    config = CONFIGMAP.replace("cont: 2", "count: 2")
    source = config_from_text(f"{config}---\nfoo: 1\n", "c.yaml", "config.yaml")
    assert source.config is not None and [m.name for m in source.config.mappings] == ["t4"]
    assert (source.issues, source.ignored) == ((), 1)


def test_render_for_nodes_matched_unmatched_and_not_kwok() -> None:
    nodes = nodes_from_text(
        "kind: List\nitems:\n"
        "- {kind: Node, metadata: {name: g5, uid: u-1, labels: {node.kubernetes.io/instance-type: g5.48xlarge, "
        "type: kwok}}}\n"
        "- {kind: Node, metadata: {name: m5, labels: {node.kubernetes.io/instance-type: m5.large, type: kwok}}}\n"
        "- {kind: Node, metadata: {name: real}}\n",
        "n.yaml",
    )
    assert nodes.ok and len(nodes.nodes) == 3
    overlays = overlays_from_text(OVERLAY, "o.yaml").rules
    config = config_from_text(CONFIGMAP.replace("cont: 2", "count: 2"), "c.yaml", "config.yaml").config
    assert config is not None
    g5, m5, real = render_nodes(nodes.nodes, overlays, config)

    assert g5.kwok and g5.matched and g5.ok
    (pool,) = g5.pools
    assert (pool.driver, pool.slices, pool.devices, pool.source) == ("gpu.example.com", 1, 8, "overlay/h100")
    (manifest,) = g5.manifests
    assert manifest["spec"]["nodeName"] == "g5" and len(manifest["spec"]["devices"]) == 8
    assert manifest["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert manifest["metadata"]["labels"][LABEL_MANAGED_BY] == "dra-kwok-driver"

    assert not m5.matched and m5.manifests == ()
    assert [(w.source, w.name) for w in m5.no_match] == [("overlay", "h100"), ("mapping", "t4")]
    assert "the node has node.kubernetes.io/instance-type='m5.large'" in (m5.no_match[0].reason or "")
    assert not real.kwok and real.manifests == ()


def test_a_template_too_long_for_the_node_is_a_render_error() -> None:
    overlay = OVERLAY.replace("{name: gpu, count: 8}", "{name: gpu, attributes: {model: '{nodeName}-{nodeName}'}}")
    labels = {"node.kubernetes.io/instance-type": "g5.48xlarge"}
    node = {"metadata": {"name": "n" * 40, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}}}
    (result,) = render_nodes([node], overlays_from_text(overlay, "o.yaml").rules, FallbackConfig())
    assert result.kwok and result.matched and not result.ok and result.manifests == ()
    (issue,) = result.issues
    assert "must be at most 64 bytes of UTF-8 (has 81)" in issue.message
    assert issue.fix == "use {nodeHash} (8 characters) instead of {nodeName} for long node names"


def test_a_document_that_is_not_a_node() -> None:
    assert nodes_from_text("kind: Pod\nmetadata: {name: p}\n", "n.yaml").not_a_node
    assert nodes_from_text("a: [\n", "n.yaml").issues
