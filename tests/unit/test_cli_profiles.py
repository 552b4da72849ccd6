"""`dra-kwok profiles`: the table of profiles, one profile's parameters, source and example
template, and the DeviceClasses of some profiles as a YAML stream; an unknown name is a usage
error that names it and lists the known profiles. A test-only profile is registered for these
tests; every built-in one is shown and printed too."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Literal

import pytest
import yaml
from pydantic import Field

from dra_kwok.cli import build_parser, main
from dra_kwok.core.overlay import load_overlay
from dra_kwok.core.profiles import PROFILES, DeviceClassSpec, Parameters, Profile, ProfilePool, register
from dra_kwok.core.profiles.catalog import device_class_manifests, parameter_rows, profile_details

BUILTIN = sorted(PROFILES)  # before the test profile is registered
DRIVER = "test-profile.dra-kwok.example.com"


class Flavour(StrEnum):
    PLAIN = "plain"
    SPICY = "spicy"


class _Params(Parameters):
    count: int = Field(default=2, ge=1, le=16, description="devices per node")
    model: str = Field(default="T-1000", min_length=1, max_length=32, pattern="^[A-Z]")
    mode: Literal["none", "single", "mixed"] = "none"
    flavour: Flavour = Flavour.PLAIN
    memory_gib: int | None = None
    zones: list[str] = Field(default_factory=lambda: ["a"], max_length=4)


def _build(p: _Params) -> ProfilePool:
    return ProfilePool(
        devices=[{"name": f"dev-{i}", "attributes": {"model": {"string": p.model}}} for i in range(p.count)]
    )


TEST_PROFILE = Profile(
    name="test-only-profile",
    driver=DRIVER,
    summary="a profile for these tests",
    source="tests/unit/test_cli_profiles.py",
    parameters=_Params,
    build=_build,
    device_classes=(
        DeviceClassSpec(DRIVER, f'device.driver == "{DRIVER}"'),
        DeviceClassSpec(
            f"big.{DRIVER}", f'device.driver == "{DRIVER}" && device.attributes["{DRIVER}"].big', "x.io/big"
        ),
    ),
    example={"count": 4, "mode": "mixed"},
)
OTHER = Profile(
    name="test-only-other",
    driver="other.dra-kwok.example.com",
    summary="another one",
    source="here",
    parameters=Parameters,
    build=lambda _: ProfilePool(devices=[]),
    device_classes=(DeviceClassSpec("other.dra-kwok.example.com", 'device.driver == "other.dra-kwok.example.com"'),),
)


@pytest.fixture
def registered() -> Iterator[None]:
    register(TEST_PROFILE, OTHER)
    yield
    del PROFILES[TEST_PROFILE.name], PROFILES[OTHER.name]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_subcommand_is_described_like_the_others() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    command = sub.choices["profiles"]
    assert command.description and "exit codes: 0" in (command.epilog or "")
    assert all(a.help for a in command._actions)


@pytest.mark.usefixtures("registered")
def test_without_arguments_a_table_of_every_profile(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "profiles")
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "DRIVER", "SUMMARY"]
    assert [r.split()[0] for r in rows] == sorted(PROFILES)
    (row,) = [r for r in rows if r.startswith(TEST_PROFILE.name + " ")]
    assert row.split(None, 2) == [TEST_PROFILE.name, DRIVER, TEST_PROFILE.summary]
    assert header.index("DRIVER") == row.index(DRIVER) and header.index("SUMMARY") == row.index("a profile")


@pytest.mark.usefixtures("registered")
def test_a_profile_shows_its_parameters_source_classes_and_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "profiles", TEST_PROFILE.name)
    assert (code, err) == (0, "")
    assert out.startswith(
        f"{TEST_PROFILE.name}: {TEST_PROFILE.summary}\ndriver: {DRIVER}\nsource: {TEST_PROFILE.source}\n"
    )
    lines = out.splitlines()
    header = lines[lines.index("parameters:") + 1]
    assert header.split() == ["NAME", "TYPE", "DEFAULT", "CONSTRAINTS", "DESCRIPTION"]
    params = {line.split()[0]: line for line in lines[lines.index("parameters:") + 2 :][:6]}
    assert list(params) == ["count", "model", "mode", "flavour", "memoryGib", "zones"]
    assert params["count"].split() == ["count", "integer", "2", ">=", "1,", "<=", "16", "devices", "per", "node"]
    assert (
        params["model"].split()[1:3] == ["string", '"T-1000"']
        and 'length >= 1, length <= 32, matches "^[A-Z]"' in params["model"]
    )
    assert 'one of "none", "single", "mixed"' in params["mode"]
    assert '"plain"' in params["flavour"] and 'one of "plain", "spicy"' in params["flavour"]
    assert "integer | null" in params["memoryGib"] and "null" in params["memoryGib"]
    assert (
        params["zones"].split()[1:4] == ["list", "of", "string"]
        and '["a"]' in params["zones"]
        and "items <= 4" in params["zones"]
    )
    assert f'  big.{DRIVER}: device.driver == "{DRIVER}"' in out and "(extendedResourceName x.io/big)" in out
    example = yaml.safe_load(out[out.index("example:") :].split("\n", 1)[1])
    assert example == [
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "spec": {"profile": {"name": TEST_PROFILE.name, "parameters": {"count": 4, "mode": "mixed"}}},
        }
    ]


@pytest.mark.usefixtures("registered")
def test_the_example_template_is_a_valid_overlay_template() -> None:
    text = profile_details(TEST_PROFILE.name)
    (template,) = yaml.safe_load(text[text.index("example:") :].split("\n", 1)[1])
    overlay = {
        "apiVersion": "test.karpenter.sh/v1alpha1",
        "kind": "DRANodeOverlay",
        "metadata": {"name": "o"},
        "spec": {"requirements": [{"key": "a", "operator": "In", "values": ["b"]}], "resourceSlices": [template]},
    }
    rule, issues = load_overlay(overlay)
    assert rule is not None, [str(i) for i in issues]
    assert [d.name for d in rule.pools[0].devices] == [f"dev-{i}" for i in range(4)]


@pytest.mark.usefixtures("registered")
def test_a_profile_without_parameters_or_classes_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert parameter_rows(OTHER) == []
    code, out, _ = run_cli(capsys, "profiles", OTHER.name)
    assert code == 0 and "parameters:\n  (none)\n" in out
    example = yaml.safe_load(out[out.index("example:") :].split("\n", 1)[1])
    assert example[0]["spec"] == {"profile": {"name": OTHER.name}}


@pytest.mark.usefixtures("registered")
def test_device_classes_are_a_yaml_stream_for_kubectl_apply(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "profiles", "--device-classes", TEST_PROFILE.name, OTHER.name)
    assert (code, err) == (0, "")
    assert out.startswith("---\n") and out.count("---\n") == 3
    docs = list(yaml.safe_load_all(out))
    assert docs == [dc.manifest() for p in (TEST_PROFILE, OTHER) for dc in p.device_classes]
    big = docs[1]
    assert big == {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": f"big.{DRIVER}"},
        "spec": {
            "selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}" && device.attributes["{DRIVER}"].big'}}],
            "extendedResourceName": "x.io/big",
        },
    }
    assert "extendedResourceName" not in docs[0]["spec"]


@pytest.mark.usefixtures("registered")
def test_a_name_given_twice_prints_its_classes_once() -> None:
    assert device_class_manifests([OTHER.name, OTHER.name]) == [OTHER.device_classes[0].manifest()]


def test_profiles_sharing_a_class_print_it_once() -> None:
    sibling = Profile("test-only-sibling", DRIVER, "s", "here", Parameters, _build, TEST_PROFILE.device_classes[1:])
    register(TEST_PROFILE, sibling)
    try:
        names = [m["metadata"]["name"] for m in device_class_manifests([sibling.name, TEST_PROFILE.name])]
    finally:
        del PROFILES[TEST_PROFILE.name], PROFILES[sibling.name]
    assert names == [f"big.{DRIVER}", DRIVER]


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize(
    "argv",
    [["profiles", "no-such"], ["profiles", "--device-classes", "test-only-profile", "no-such"]],
    ids=["show", "device-classes"],
)
def test_an_unknown_name_is_a_usage_error_naming_it_and_the_known_profiles(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith("dra-kwok profiles: 'no-such' is not a profile; known profiles: ")
    assert ", ".join(sorted(PROFILES)) in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profiles", "--device-classes"], "--device-classes needs profile names"),
        (["profiles", "a", "b"], "give one profile name"),
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert (code, out) == (2, "") and message in err


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_profile_is_shown_with_a_valid_example(capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out, err = run_cli(capsys, "profiles", name)
    assert (code, err) == (0, "")
    (template,) = yaml.safe_load(out[out.index("example:") :].split("\n", 1)[1])
    assert template["spec"]["profile"]["name"] == name
    code, out, err = run_cli(capsys, "profiles", "--device-classes", name)
    assert (code, err) == (0, "")
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(out)] == [c.name for c in PROFILES[name].device_classes]


def test_render_shows_a_profile_with_its_overrides_beside_hand_written_devices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path
    (root / "node.yaml").write_text(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: kwok-p5-1\n  annotations: {kwok.x-k8s.io/node: fake}\n"
        "  labels: {node.kubernetes.io/instance-type: p5}\n"
    )
    (root / "overlay.yaml").write_text(
        "apiVersion: test.karpenter.sh/v1alpha1\nkind: DRANodeOverlay\nmetadata: {name: p5}\nspec:\n"
        "  requirements: [{key: node.kubernetes.io/instance-type, operator: In, values: [p5]}]\n"
        "  resourceSlices:\n  - spec:\n"
        "      profile: {name: nvidia-gpu, parameters: {product: h100, count: 2},"
        " overrides: {attributes: {zone: {string: a}}}}\n"
        "      devices: [{name: extra}]\n"
    )
    code = main(["render", "--overlay", str(root / "overlay.yaml"), "--node", str(root / "node.yaml")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "gpu.nvidia.com: 1 slice(s), 3 device(s), from overlay/p5" in err
    (slice_,) = list(yaml.safe_load_all(out))
    devices = slice_["spec"]["devices"]
    assert [d["name"] for d in devices] == ["extra", "gpu-0", "gpu-1"]
    assert slice_["spec"]["driver"] == "gpu.nvidia.com"
    for gpu in devices[1:]:
        assert gpu["attributes"]["productName"] == {"string": "NVIDIA H100 80GB HBM3"}
        assert gpu["attributes"]["zone"] == {"string": "a"}
        assert gpu["attributes"]["uuid"]["string"].startswith("GPU-")
    assert devices[1]["attributes"]["uuid"] != devices[2]["attributes"]["uuid"]
