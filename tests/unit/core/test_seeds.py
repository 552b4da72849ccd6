"""The seed design docs' examples, as written (tests/fixtures/seeds) and corrected (tests/fixtures/examples).

As written they are rejected only for their invalid names, each with the fix; the corrected
versions, which the docs point at, load without a single finding and render what they describe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dra_kwok.core.config import FallbackConfig, config_text_from_configmap, load_config_text
from dra_kwok.core.issues import Issue, format_path
from dra_kwok.core.overlay import OverlayRule, load_overlay
from dra_kwok.core.render import NodeRef, render
from dra_kwok.core.resolve import KwokNodeRule, order_overlays, resolve

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SEEDS = FIXTURES / "seeds"
EXAMPLES = FIXTURES / "examples"

CONFIG_FILES = [
    "seed-000-configuration-flow.config.yaml",
    "seed-000-step1-configmap.yaml",
    "seed-000-multi-gpu.config.yaml",
    "seed-000-mixed-device-types.config.yaml",
    "seed-001-configmap.yaml",
]
OVERLAY_FILES = ["seed-001-dranodeoverlay.yaml"]

SEED_DRIVER = "karpenter.sh/dra-kwok-driver"
FIXED_DRIVER = "karpenter.sh.dra-kwok-driver"
DRIVER_ERROR = ("driver", SEED_DRIVER, f"use {FIXED_DRIVER!r}")


def name_error(path: str, key: str, snake: str, camel: str) -> tuple[str, str, str]:
    return (path, key, f"use {snake!r} or {camel!r}")


# file -> every error it must produce: (path, bad value, fix suggestion)
EXPECTED_ERRORS: dict[str, list[tuple[str, str, str]]] = {
    "seed-000-configuration-flow.config.yaml": [DRIVER_ERROR],
    "seed-000-step1-configmap.yaml": [
        name_error(
            "mappings[0].resourceSlice.devices[0].attributes.compute-capability",
            "compute-capability",
            "compute_capability",
            "computeCapability",
        ),
        DRIVER_ERROR,
    ],
    "seed-000-multi-gpu.config.yaml": [DRIVER_ERROR],
    "seed-000-mixed-device-types.config.yaml": [
        name_error(
            "mappings[0].resourceSlice.devices[1].attributes.dsp-slices", "dsp-slices", "dsp_slices", "dspSlices"
        ),
    ],
    "seed-001-configmap.yaml": [
        name_error(
            "mappings[0].resourceSlice.devices[0].attributes.compute-capability",
            "compute-capability",
            "compute_capability",
            "computeCapability",
        ),
    ],
    "seed-001-dranodeoverlay.yaml": [
        name_error(
            f"spec.resourceSlices[0].spec.devices[{i}].attributes.compute-capability",
            "compute-capability",
            "compute_capability",
            "computeCapability",
        )
        for i in (0, 1)
    ],
}


def config_text(path: Path) -> str:
    doc = yaml.safe_load(path.read_text())
    if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
        assert doc["metadata"] == {"name": "dra-kwok-configmap", "namespace": "karpenter"}
        text, issues = config_text_from_configmap(doc, "config.yaml")
        assert issues == [] and text is not None
        return text
    return path.read_text()


def load_config_file(path: Path) -> tuple[FallbackConfig | None, list[Issue]]:
    return load_config_text(config_text(path))


def load_overlay_file(path: Path) -> tuple[OverlayRule | None, list[Issue]]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("test.karpenter.sh/v1alpha1", "DRANodeOverlay")
    return load_overlay(doc)


def described(issue: Issue) -> tuple[str, str, str]:
    """(path, bad value, fix) for an error; the fix is in `fix` or at the end of the message."""
    fix = issue.fix or issue.message.rsplit("; ", 1)[-1]
    return (format_path(issue.path), issue.value, fix)


def test_every_seed_fixture_has_a_corrected_example() -> None:
    assert sorted(p.name for p in SEEDS.iterdir()) == sorted(CONFIG_FILES + OVERLAY_FILES)
    assert {p.name for p in EXAMPLES.iterdir()} >= set(CONFIG_FILES + OVERLAY_FILES)


@pytest.mark.parametrize("name", CONFIG_FILES + OVERLAY_FILES)
def test_seed_examples_are_rejected_only_for_their_invalid_names(name: str) -> None:
    path = SEEDS / name
    loaded, issues = load_overlay_file(path) if name in OVERLAY_FILES else load_config_file(path)
    assert loaded is None
    assert all(i.is_error for i in issues), [str(i) for i in issues]
    assert sorted(described(i) for i in issues) == sorted(EXPECTED_ERRORS[name])


def test_seed_messages_explain_the_rules() -> None:
    _, issues = load_config_file(SEEDS / "seed-000-step1-configmap.yaml")
    by_path = {format_path(i.path): str(i) for i in issues}
    assert by_path["driver"] == (
        "driver: invalid driver name: must be a DNS subdomain: lowercase letters, digits, '-' and '.', each "
        "dot-separated part starting and ending with a letter or digit (got 'karpenter.sh/dra-kwok-driver'); "
        "fix: use 'karpenter.sh.dra-kwok-driver'"
    )
    assert by_path["mappings[0].resourceSlice.devices[0].attributes.compute-capability"] == (
        "mappings[0].resourceSlice.devices[0].attributes.compute-capability: invalid name 'compute-capability': "
        "must be a C identifier: letters, digits and '_', not starting with a digit; use 'compute_capability' or "
        "'computeCapability' (got 'compute-capability')"
    )


def test_the_seed_overlay_keeps_its_elision_as_a_comment() -> None:
    text = (SEEDS / "seed-001-dranodeoverlay.yaml").read_text()
    assert "      # ... (6 more devices for total of 8)\n" in text
    devices = yaml.safe_load(text)["spec"]["resourceSlices"][0]["spec"]["devices"]
    assert [d["name"] for d in devices] == ["nvidia-h100-0", "nvidia-h100-1"]


def is_overlay(path: Path) -> bool:
    return bool(yaml.safe_load(path.read_text()).get("kind") == "DRANodeOverlay")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_loads_without_findings(path: Path) -> None:
    """The docs point at these: not an error, not even a warning."""
    loaded, issues = load_overlay_file(path) if is_overlay(path) else load_config_file(path)
    assert issues == [], [str(i) for i in issues]
    assert loaded is not None


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_corrected_config_examples_use_the_fixed_driver(name: str) -> None:
    cfg, _ = load_config_file(EXAMPLES / name)
    assert cfg is not None and cfg.mappings
    assert cfg.drivers == frozenset({FIXED_DRIVER})


def _render_devices(labels: dict[str, str], overlays: list[OverlayRule], cfg: FallbackConfig) -> list[dict[str, Any]]:
    slices = render(NodeRef("kwok-node-1", "uid-1"), resolve(labels, order_overlays(overlays), cfg)).all_slices()
    return [d for s in slices for d in s.content["devices"]]


def test_corrected_step1_gives_one_t4_on_c_4x_nodes() -> None:
    cfg, _ = load_config_file(EXAMPLES / "seed-000-step1-configmap.yaml")
    assert cfg is not None
    labels = {"node.kubernetes.io/instance-type": "c-4x-amd64-linux"}
    node = NodeRef("kwok-node-1", "uid-1")
    (s,) = render(node, resolve(labels, [], cfg)).all_slices()
    assert (s.name, s.pool, s.driver) == ("kwok-node-1-devices", "kwok-node-1-device-pool", FIXED_DRIVER)
    assert s.content == {
        "devices": [
            {
                "name": "nvidia-t4-0-0",
                "attributes": {
                    "type": {"string": "nvidia-tesla-t4"},
                    "memory": {"string": "16Gi"},
                    "compute_capability": {"string": "7.5"},
                },
            }
        ]
    }


def test_corrected_multi_gpu_matches_by_instance_type() -> None:
    cfg, _ = load_config_file(EXAMPLES / "seed-000-multi-gpu.config.yaml")
    assert cfg is not None
    v100 = _render_devices({"node.kubernetes.io/instance-type": "m-8x-amd64-linux"}, [], cfg)
    assert [d["name"] for d in v100] == [f"nvidia-v100-0-{i}" for i in range(4)]
    assert v100[0]["attributes"]["nvlink"] == {"string": "true"}  # quoted in the seed: a string
    assert resolve({"node.kubernetes.io/instance-type": "other"}, [], cfg).pools == ()


def test_corrected_mixed_devices_share_one_pool() -> None:
    cfg, _ = load_config_file(EXAMPLES / "seed-000-mixed-device-types.config.yaml")
    assert cfg is not None
    devices = _render_devices({"accelerator-type": "mixed"}, [], cfg)
    assert [d["name"] for d in devices] == ["nvidia-t4-0-0", "nvidia-t4-0-1", "xilinx-fpga-0-0"]
    assert devices[2]["attributes"]["dsp_slices"] == {"string": "12288"}


def test_corrected_overlay_beats_the_corrected_configmap_on_g5_nodes() -> None:
    cfg, _ = load_config_file(EXAMPLES / "seed-001-configmap.yaml")
    rule, _ = load_overlay_file(EXAMPLES / "seed-001-dranodeoverlay.yaml")
    assert cfg is not None and rule is not None
    g5 = {"node.kubernetes.io/instance-type": "g5.48xlarge"}
    res = resolve(g5, [rule], cfg)
    assert [str(p.source) for p in res.pools] == ["overlay/gpu-dra-config"]
    devices = _render_devices(g5, [rule], cfg)
    assert [d["name"] for d in devices] == [f"nvidia-h100-{i}" for i in range(8)]
    assert {d["attributes"]["compute_capability"]["string"] for d in devices} == {"9.0"}
    f1 = _render_devices({"node.kubernetes.io/instance-type": "f1.2xlarge"}, [rule], cfg)
    assert [d["name"] for d in f1] == ["xilinx-u250-0"]
    assert [d["name"] for d in _render_devices(g5, [], cfg)] == [f"nvidia-h100-{i}" for i in range(8)]


def test_seed_001_selects_on_a_kwok_annotation_as_if_it_were_a_label() -> None:
    """Why the corrected example drops `kwok.x-k8s.io/node: "fake"` from matchLabels: KWOK marks its
    nodes with that annotation, so as a label selector it matches no KWOK node."""
    seed = yaml.safe_load(config_text(SEEDS / "seed-001-configmap.yaml"))
    seed["mappings"][0]["resourceSlice"]["devices"][0]["attributes"].pop("compute-capability")
    cfg, issues = load_config_text(yaml.safe_dump(seed))
    assert cfg is not None and issues == []
    labels = {"node.kubernetes.io/instance-type": "g5.48xlarge"}
    annotations = {"kwok.x-k8s.io/node": "fake"}
    assert KwokNodeRule().matches(labels, annotations)
    assert resolve(labels, [], cfg).pools == ()
    fixed, _ = load_config_file(EXAMPLES / "seed-001-configmap.yaml")
    assert fixed is not None and [str(p.source) for p in resolve(labels, [], fixed).pools] == ["mapping/h100-nodes"]
