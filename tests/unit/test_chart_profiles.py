"""The chart's `deviceClasses: [{profile: <name>}]`: the committed files/profile-device-classes.yaml
and the schema's enum of profile names are what `make profiles` writes from PROFILES now, `helm
template` installs a profile's DeviceClasses exactly as the profile declares them (the real
driver's names, CEL selectors and extendedResourceName), and an unknown profile or a profile mixed
with the other keys of an entry fails the render; `dra-kwok validate` reads such values too.

The rendering is checked on every built-in profile and, so that it is checked even while there
are none, on a copy of the chart generated with a test-only profile registered."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dra_kwok.cli import main
from dra_kwok.core.profiles import PROFILES, DeviceClassSpec, Parameters, Profile, ProfilePool, register
from dra_kwok.core.profiles.catalog import (
    CHART_FILE,
    VALUES_SCHEMA_FILE,
    chart_device_classes,
    chart_device_classes_yaml,
    profile_enum,
    values_schema_with_profiles,
)
from tests.support.chart import CHART, Helm, cached_helm

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILTIN = sorted(PROFILES)  # before the test profile is registered
DRIVER = "test-profile.dra-kwok.example.com"
LABELS = "app.kubernetes.io/name"

TEST_PROFILE = Profile(
    name="test-only-chart-profile",
    driver=DRIVER,
    summary="a profile for these tests",
    source="tests/unit/test_chart_profiles.py",
    parameters=Parameters,
    build=lambda _: ProfilePool(devices=[]),
    device_classes=(
        DeviceClassSpec(DRIVER, f'device.driver == "{DRIVER}"'),
        DeviceClassSpec(
            f"big.{DRIVER}", f'device.driver == "{DRIVER}" && device.attributes["{DRIVER}"].big', "x.io/big"
        ),
    ),
)

# Another profile of the same driver, sharing its first class (as nvidia-gpu and nvidia-mig do).
SIBLING = Profile(
    name="test-only-chart-sibling",
    driver=DRIVER,
    summary="another profile of the same driver",
    source="tests/unit/test_chart_profiles.py",
    parameters=Parameters,
    build=lambda _: ProfilePool(devices=[]),
    device_classes=TEST_PROFILE.device_classes[:1],
)


@pytest.fixture
def registered() -> Iterator[None]:
    register(TEST_PROFILE, SIBLING)
    yield
    del PROFILES[TEST_PROFILE.name], PROFILES[SIBLING.name]


@pytest.fixture(scope="module")
def helm() -> Helm:
    binary = cached_helm()
    if not binary.exists():
        pytest.skip(f"{binary} is missing: run `make binaries`")
    return Helm(binary)


def template(helm: Helm, chart: Path, values: dict[str, Any], *args: str) -> list[dict[str, Any]]:
    proc = helm.run("template", "t", str(chart), "--set-json", f"deviceClasses={json.dumps(values)}", *args)
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def template_error(helm: Helm, chart: Path, *args: str) -> str:
    proc = helm.run("template", "t", str(chart), *args, check=False)
    assert proc.returncode != 0, f"helm template {' '.join(args)} succeeded, expected a refusal"
    return proc.stderr


def device_classes(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The DeviceClasses rendered, without the chart's labels (checked to be there)."""
    out = []
    for d in docs:
        if d["kind"] == "DeviceClass":
            assert LABELS in d["metadata"]["labels"], d
            out.append({**d, "metadata": {k: v for k, v in d["metadata"].items() if k != "labels"}})
    return out


def expected(profile: Profile) -> list[dict[str, Any]]:
    return [dc.manifest() for dc in profile.device_classes]


# --- the generated files ------------------------------------------------------------------------
def test_committed_profile_device_classes_are_the_generated_ones() -> None:
    path = REPO_ROOT / CHART_FILE
    assert path.is_file(), f"{CHART_FILE} is missing: run `make profiles`"
    assert path.read_text() == chart_device_classes_yaml(), f"{CHART_FILE} is stale: run `make profiles` and commit it"
    assert sorted(yaml.safe_load(path.read_text())) == sorted(PROFILES)


def test_values_schema_enum_is_the_profile_names() -> None:
    text = (REPO_ROOT / VALUES_SCHEMA_FILE).read_text()
    assert (profile_enum(json.loads(text)) or []) == sorted(PROFILES), "run `make profiles` and commit it"
    assert text == values_schema_with_profiles(text), f"{VALUES_SCHEMA_FILE} is stale: run `make profiles`"


@pytest.mark.usefixtures("registered")
def test_the_generator_writes_each_class_as_the_chart_renders_it() -> None:
    text = values_schema_with_profiles((REPO_ROOT / VALUES_SCHEMA_FILE).read_text())
    assert profile_enum(json.loads(text)) == sorted(PROFILES)
    assert chart_device_classes()[TEST_PROFILE.name] == [
        {"name": DRIVER, "selectors": [f'device.driver == "{DRIVER}"']},
        {
            "name": f"big.{DRIVER}",
            "selectors": [f'device.driver == "{DRIVER}" && device.attributes["{DRIVER}"].big'],
            "extendedResourceName": "x.io/big",
        },
    ]


# --- helm template ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILTIN or [None])
def test_a_builtin_profile_installs_its_device_classes(helm: Helm, name: str | None) -> None:
    if name is None:
        pytest.skip("PROFILES is empty: no built-in profile to render")
    docs = template(helm, CHART, [{"profile": name}])
    assert device_classes(docs) == expected(PROFILES[name])


def test_an_unknown_profile_fails_naming_it(helm: Helm) -> None:
    err = template_error(helm, CHART, "--set-json", 'deviceClasses=[{"profile":"no-such-profile"}]')
    if PROFILES:  # the schema's enum refuses it first (Helm's message does not quote the value)
        assert "at '/deviceClasses/0/profile': value must be " in err
        assert all(repr(name) in err for name in PROFILES), err
    else:
        assert 'deviceClasses[0].profile "no-such-profile" is not a profile; known profiles: none' in err


@pytest.fixture
def chart(tmp_path: Path, registered: None) -> Path:
    """A copy of the chart with the test profile in its generated file and schema."""
    copy = tmp_path / "dra-kwok-driver"
    shutil.copytree(CHART, copy)
    (copy / "files" / "profile-device-classes.yaml").write_text(chart_device_classes_yaml())
    schema = copy / "values.schema.json"
    schema.write_text(values_schema_with_profiles(schema.read_text()))
    return copy


def test_a_profile_installs_exactly_its_device_classes(helm: Helm, chart: Path) -> None:
    docs = template(helm, chart, [{"profile": TEST_PROFILE.name}])
    assert device_classes(docs) == expected(TEST_PROFILE)
    assert device_classes(docs)[1]["spec"]["extendedResourceName"] == "x.io/big"


def test_profiles_and_hand_written_classes_go_together(helm: Helm, chart: Path) -> None:
    docs = template(helm, chart, [{"name": "mine"}, {"profile": TEST_PROFILE.name}])
    names = [d["metadata"]["name"] for d in device_classes(docs)]
    assert names == ["mine", DRIVER, f"big.{DRIVER}"]


def test_profiles_of_one_driver_install_its_classes_once(helm: Helm, chart: Path) -> None:
    docs = template(helm, chart, [{"profile": SIBLING.name}, {"profile": TEST_PROFILE.name}])
    assert device_classes(docs) == expected(TEST_PROFILE)


def test_set_on_the_default_entry_takes_the_profile(helm: Helm, chart: Path) -> None:
    """`--set deviceClasses[0].profile=...` merges into the default entry, whose other keys are empty."""
    proc = helm.run("template", "t", str(chart), "--set", f"deviceClasses[0].profile={TEST_PROFILE.name}")
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert device_classes(docs) == expected(TEST_PROFILE)


def test_an_unknown_profile_fails_naming_the_field_the_value_and_the_known_ones(helm: Helm, chart: Path) -> None:
    bad = ["--set-json", 'deviceClasses=[{"name":"mine"},{"profile":"no-such-profile"}]']
    err = template_error(helm, chart, *bad)
    names = sorted(PROFILES)  # the built-in ones and the two of this test
    assert f"at '/deviceClasses/1/profile': value must be one of {', '.join(map(repr, names))}" in err
    # the template's own check, behind the schema, also names the value
    err = template_error(helm, chart, *bad, "--skip-schema-validation")
    assert f'deviceClasses[1].profile "no-such-profile" is not a profile; known profiles: {", ".join(names)}' in err


@pytest.mark.parametrize(
    ("entry", "keys"),
    [
        ({"name": "mine"}, "name"),
        ({"driver": "gpu.example.com", "selectors": ["true"]}, "driver, selectors"),
        ({"extendedResourceName": "example.com/gpu"}, "extendedResourceName"),
    ],
)
def test_a_profile_mixed_with_other_keys_is_refused(helm: Helm, chart: Path, entry: dict[str, Any], keys: str) -> None:
    values = json.dumps([{"profile": TEST_PROFILE.name, **entry}])
    err = template_error(helm, chart, "--set-json", f"deviceClasses={values}")
    assert f'deviceClasses[0]: profile "{TEST_PROFILE.name}" cannot be combined with {keys}' in err


# --- dra-kwok validate --------------------------------------------------------------------------
def validate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, values: dict[str, Any], *flags: str
) -> tuple[int, str]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    code = main(["validate", *flags, str(path)])
    return code, capsys.readouterr().out.replace(f"{path} ", "")


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize("config", [None, {"driver": "gpu.example.com"}], ids=["deviceClasses-only", "with-config"])
def test_validate_accepts_values_with_a_profile(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, config: dict[str, Any] | None
) -> None:
    values: dict[str, Any] = {"deviceClasses": [{"profile": TEST_PROFILE.name}, {"name": "mine"}]}
    if config is not None:
        values["config"] = config
    assert validate(capsys, tmp_path, values) == (0, "(Helm values): ok\n")


@pytest.mark.usefixtures("registered")
def test_validate_reports_an_unknown_profile_with_field_value_and_fix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out = validate(capsys, tmp_path, {"deviceClasses": [{"name": "mine"}, {"profile": "no-such-profile"}]})
    assert code == 1
    assert out.splitlines()[0] == (
        "(Helm values): error: deviceClasses[1].profile: is not a known profile (got 'no-such-profile'); "
        f"fix: use one of: {', '.join(sorted(PROFILES))} (dra-kwok profiles)"
    )


@pytest.mark.usefixtures("registered")
def test_validate_refuses_a_profile_mixed_with_other_keys(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out = validate(
        capsys, tmp_path, {"deviceClasses": [{"profile": TEST_PROFILE.name, "name": "x", "driver": ""}]}
    )
    assert code == 1
    assert out.splitlines() == [
        "(Helm values): error: deviceClasses[0].name: cannot be set with profile: a profile installs the real "
        "driver's DeviceClasses as they are (got 'x'); fix: give this DeviceClass in an entry of its own",
    ]


@pytest.mark.usefixtures("registered")
def test_validate_names_a_profile_class_whose_extended_resource_the_version_drops(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    values = {"deviceClasses": [{"profile": TEST_PROFILE.name}]}
    code, out = validate(capsys, tmp_path, values, "--kubernetes-version", "1.34")
    assert code == 1
    assert out.startswith(
        f"(Helm values): error: deviceClasses[0].profile: profile {TEST_PROFILE.name}'s DeviceClass big.{DRIVER} "
        "maps extendedResourceName x.io/big: Kubernetes 1.34 drops extended resources"
    )
    assert validate(capsys, tmp_path, values, "--kubernetes-version", "1.37") == (0, "(Helm values): ok\n")
