"""`dra-kwok run`'s settings from flags and DRA_KWOK_* environment variables (the chart sets the
latter): a flag given on the command line wins over the environment, which wins over the default."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pytest
import yaml

from dra_kwok import __version__
from dra_kwok.cli import build_parser, main, settings_from_args
from dra_kwok.shell.settings import Settings


def settings(*argv: str) -> Settings:
    return settings_from_args(build_parser().parse_args(["run", *argv]))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DRA_KWOK_KWOK_ANNOTATIONS", "DRA_KWOK_KWOK_LABELS", "DRA_KWOK_DRIVERS", "DRA_KWOK_WORKERS"):
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    s = settings()
    assert s.kwok_nodes.annotations == ("kwok.x-k8s.io/node",)
    assert s.kwok_nodes.labels == (("type", "kwok"), ("kwok.x-k8s.io/provider", "kwok"))
    assert s.owned_drivers == frozenset()
    assert (s.concurrency, s.workers) == (32, 32)


def test_the_environment_replaces_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRA_KWOK_KWOK_ANNOTATIONS", "a.example.com/fake, b.example.com/fake")
    monkeypatch.setenv("DRA_KWOK_KWOK_LABELS", "pool=fake")
    monkeypatch.setenv("DRA_KWOK_DRIVERS", "gpu.example.com,fpga.example.com")
    s = settings()
    assert s.kwok_nodes.annotations == ("a.example.com/fake", "b.example.com/fake")
    assert s.kwok_nodes.labels == (("pool", "fake"),)
    assert s.owned_drivers == frozenset({"gpu.example.com", "fpga.example.com"})


def test_flags_replace_the_environment_rather_than_adding_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRA_KWOK_KWOK_ANNOTATIONS", "from-env/fake")
    monkeypatch.setenv("DRA_KWOK_KWOK_LABELS", "env=1")
    monkeypatch.setenv("DRA_KWOK_DRIVERS", "env.example.com")
    s = settings(
        "--kwok-annotation", "flag/one", "--kwok-annotation", "flag/two",
        "--kwok-label", "flag=1",
        "--driver", "flag.example.com",
    )  # fmt: skip
    assert s.kwok_nodes.annotations == ("flag/one", "flag/two")
    assert s.kwok_nodes.labels == (("flag", "1"),)
    assert s.owned_drivers == frozenset({"flag.example.com"})


def test_a_bad_label_in_the_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRA_KWOK_KWOK_LABELS", "no-equals-sign")
    with pytest.raises(SystemExit, match="DRA_KWOK_KWOK_LABELS: expected key=value, got 'no-equals-sign'"):
        settings()


def test_a_bad_label_flag_is_refused_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        settings("--kwok-label", "nope")


def test_every_run_flag_has_the_environment_variable_its_help_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """`dra-kwok run --help` says --some-name is DRA_KWOK_SOME_NAME, with four named exceptions."""
    lists = {"--kwok-annotation": "KWOK_ANNOTATIONS", "--kwok-label": "KWOK_LABELS", "--driver": "DRIVERS"}
    renamed = {"--key": "CONFIGMAP_KEY", **lists}
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    run = sub.choices["run"]
    flags = [o for a in run._actions for o in a.option_strings if o.startswith("--") and o != "--help"]
    assert len(flags) == 30, flags
    for flag in flags:
        name = "DRA_KWOK_" + renamed.get(flag, flag[2:].upper().replace("-", "_"))
        booleans = ("--simulate-claims", "--karpenter-node-overlays", "--leader-elect")
        value = {"--kwok-label": "k=v", "--log-format": "json", **dict.fromkeys(booleans, "True")}.get(flag, "7")
        monkeypatch.setenv(name, value)
        s = settings()
        monkeypatch.delenv(name)
        shown = {
            "--kubeconfig": s.kubeconfig,
            "--configmap-name": s.configmap_name,
            "--namespace": s.configmap_namespace,
            "--key": s.configmap_key,
            "--kwok-annotation": ",".join(s.kwok_nodes.annotations),
            "--kwok-label": ",".join(f"{k}={v}" for k, v in s.kwok_nodes.labels),
            "--managed-by": s.managed_by,
            "--field-manager": s.field_manager,
            "--driver": ",".join(s.owned_drivers),
            "--metrics-port": s.metrics_port,
            "--health-port": s.health_port,
            "--bind-address": s.bind_address,
            "--log-format": s.log_format,
            "--log-level": s.log_level,
            "--kubernetes-version": s.kubernetes_version,
            "--feature-gates": s.feature_gates,
            "--concurrency": s.concurrency,
            "--workers": s.workers,
            "--resync-seconds": s.resync_seconds,
            "--node-watch-pace": s.node_watch_pace,
            "--unready-after": s.unready_after,
            "--simulate-claims": s.simulate_claims,
            "--karpenter-node-overlays": s.karpenter_node_overlays,
            "--leader-elect": s.leader_elect,
            "--leader-election-namespace": s.leader_election_namespace,
            "--leader-election-id": s.leader_election_id,
            "--leader-election-identity": s.leader_identity,
            "--lease-duration": s.lease_duration,
            "--renew-deadline": s.renew_deadline,
            "--retry-period": s.retry_period,
        }[flag]
        assert str(shown) in (value, str(float(value)) if value.isdigit() else value), (flag, name, shown)


def test_ports_are_numbers_zero_for_off_or_auto() -> None:
    assert (settings("--health-port", "0").health_port, settings("--health-port", "auto").health_port) == (None, 0)
    assert settings("--metrics-port", "9090").metrics_port == 9090
    for bad in ("-1", "65536", "eighty"):
        with pytest.raises(SystemExit):
            settings("--metrics-port", bad)


def test_the_node_watch_pace_is_seconds_zero_or_more_from_the_flag_or_its_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert settings().node_watch_pace == 0.2
    assert (
        settings("--node-watch-pace", "0").node_watch_pace,
        settings("--node-watch-pace", "1.5").node_watch_pace,
    ) == (
        0.0,
        1.5,
    )
    for bad in ("-0.1", "nan", "inf", "fast"):
        with pytest.raises(SystemExit):
            settings("--node-watch-pace", bad)
        assert f"{bad!r} is not a pace: give seconds, 0 or more" in capsys.readouterr().err
    monkeypatch.setenv("DRA_KWOK_NODE_WATCH_PACE", "-1")  # a bad variable is refused as the flag is
    with pytest.raises(SystemExit):
        settings()
    assert "'-1' is not a pace" in capsys.readouterr().err


# --- validate and render ------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "examples"
OVERLAY = """\
apiVersion: test.karpenter.sh/v1alpha1
kind: DRANodeOverlay
metadata: {name: h100}
spec:
  weight: 10
  requirements:
  - {key: node.kubernetes.io/instance-type, operator: In, values: [g5.48xlarge]}
  resourceSlices:
  - apiVersion: resource.k8s.io/v1
    kind: ResourceSlice
    spec:
      driver: gpu.example.com
      devices: [{name: gpu, count: 8}]
"""


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"dra-kwok {__version__}\n"


def test_every_subcommand_and_flag_is_described_with_its_default() -> None:
    parser = build_parser()
    assert parser.description and "exit codes: 0" in (parser.epilog or "")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"run", "render", "validate", "cleanup", "crd", "versions", "profiles", "fault"}
    for name, command in sub.choices.items():
        assert command.description, f"{name} has no description"
        assert "exit codes: 0" in (command.epilog or ""), name
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
            flagless = not action.option_strings or action.required or isinstance(action, argparse._StoreTrueAction)
            assert flagless or "default" in action.help, f"{name} {action.option_strings} names no default"


def test_the_examples_directory_validates_recursively_naming_each_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run_cli(capsys, "validate", str(EXAMPLES))
    assert code == 0
    assert len(out.splitlines()) == len(list(EXAMPLES.glob("*.yaml")))
    assert f"{EXAMPLES / 'seed-001-dranodeoverlay.yaml'} DRANodeOverlay/gpu-dra-config: ok" in out
    nested = write(tmp_path, "a/b/bad.yaml", "driver: gpu.example.com\nmappings: []\nmapings: []\n")
    code, out, _ = run_cli(capsys, "validate", str(tmp_path))
    assert code == 1
    assert out == f"{nested}: error: mapings: unknown field; fix: did you mean 'mappings'?\n"


@pytest.mark.parametrize("argv", [["validate", "/no/such/file"], ["render", "--node", "/no/such/node.yaml"]])
def test_a_missing_file_is_a_usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and err.endswith(": no such file\n")


def test_an_empty_directory_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "validate", str(tmp_path))
    assert (code, err) == (2, f"dra-kwok validate: {tmp_path}: a directory without .yaml, .yml or .json files\n")


def test_empty_stdin_is_an_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`helm template ... | dra-kwok validate -` must fail when helm fails and prints nothing."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, out, _ = run_cli(capsys, "validate", "-")
    assert code == 1
    assert out == "-: error: <root>: stdin is empty; fix: check the command that feeds the pipe\n"


def test_an_empty_file_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, "empty.yaml", "# nothing here\n---\n")
    code, out, _ = run_cli(capsys, "validate", path)
    assert code == 1 and "the file holds no YAML document" in out


@pytest.mark.parametrize(
    ("text", "where", "path", "lines"),
    [
        ("driver: a.example.com\nmappings: []\ndriver: b.example.com\n", "", "driver", "1 and 3"),
        (OVERLAY.replace("  weight: 10\n", "  weight: 10\n  weight: 20\n"), "", "spec.weight", "5 and 6"),
        (
            "kind: Pod\n---\n" + OVERLAY.replace("metadata: {name: h100}", "metadata: {name: h100}\nmetadata: {}"),
            " (document 2)",
            "metadata",
            "5 and 6",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  config.yaml: |\n"
            "    driver: a.example.com\n    mappings: []\n    mappings: []\n",
            "",
            "data['config.yaml'].mappings",
            "7 and 8",
        ),
    ],
    ids=["bare-config", "overlay", "second-document", "configmap-embedded"],
)
def test_keys_written_twice_are_errors_with_their_lines_in_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, where: str, path: str, lines: str
) -> None:
    file = write(tmp_path, "twice.yaml", text)
    code, out, _ = run_cli(capsys, "validate", file)
    assert code == 1
    assert f"{file}{where}" in out
    assert f"error: {path}: is written twice in {file} (lines {lines}); YAML would keep only the second" in out


def test_a_karpenter_nodeoverlay_points_to_dranodeoverlay(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    file = write(tmp_path, "no.yaml", "apiVersion: karpenter.sh/v1alpha1\nkind: NodeOverlay\nmetadata: {name: n}\n")
    code, out, _ = run_cli(capsys, "validate", file)
    assert code == 1
    assert f"{file} NodeOverlay/n: error: kind: is Karpenter's NodeOverlay (karpenter.sh/v1alpha1)" in out
    assert "fix: write a DRANodeOverlay (apiVersion: test.karpenter.sh/v1alpha1, kind: DRANodeOverlay)" in out


def test_a_dranodeoverlay_of_another_group_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    file = write(tmp_path, "o.yaml", OVERLAY.replace("test.karpenter.sh/v1alpha1", "karpenter.sh/v1alpha1", 1))
    code, out, _ = run_cli(capsys, "validate", file)
    assert code == 1 and "error: apiVersion: a DRANodeOverlay is test.karpenter.sh/v1alpha1" in out


NODES = """\
apiVersion: v1
kind: List
items:
- {kind: Node, metadata: {name: g5, labels: {node.kubernetes.io/instance-type: g5.48xlarge, type: kwok}}}
- {apiVersion: v1, kind: Node, metadata: {name: m5, labels: {node.kubernetes.io/instance-type: m5.large, type: kwok}}}
- {apiVersion: v1, kind: Node, metadata: {name: bare, labels: {type: kwok}}}
- {apiVersion: v1, kind: Node, metadata: {name: real, labels: {node.kubernetes.io/instance-type: m5.large}}}
"""
CONFIG = """\
driver: gpu.example.com
mappings:
- name: t4
  nodeSelector:
    matchExpressions: [{key: accelerator, operator: Exists}]
  resourceSlice: {devices: [{name: t4, count: 2}]}
"""


def test_render_takes_a_list_of_nodes_with_one_summary_line_each_and_says_why_nothing_matches(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    overlays = tmp_path / "overlays"
    write(overlays, "deep/h100.yaml", OVERLAY)
    code, out, err = run_cli(
        capsys,
        "render",
        "--overlay", str(overlays),
        "--config", write(tmp_path, "config.yaml", CONFIG),
        "--node", write(tmp_path, "nodes.yaml", NODES),
    )  # fmt: skip
    assert code == 0
    assert err.splitlines() == [
        "node g5: gpu.example.com: 1 slice(s), 8 device(s), from overlay/h100",
        "node m5: no overlay or mapping matches: no slices",
        "  overlay h100: requirement node.kubernetes.io/instance-type In ['g5.48xlarge'] fails: "
        "the node has node.kubernetes.io/instance-type='m5.large'",
        "  mapping t4: matchExpressions accelerator Exists fails: the node has no label accelerator",
        "node bare: no overlay or mapping matches: no slices",
        "  overlay h100: requirement node.kubernetes.io/instance-type In ['g5.48xlarge'] fails: "
        "the node has no label node.kubernetes.io/instance-type",
        "  mapping t4: matchExpressions accelerator Exists fails: the node has no label accelerator",
        "node real: not a KWOK node (no annotation kwok.x-k8s.io/node, label type=kwok or "
        "kwok.x-k8s.io/provider=kwok): the driver publishes nothing for it",
    ]
    (slice_,) = yaml.safe_load_all(out)
    assert slice_["spec"]["nodeName"] == "g5" and len(slice_["spec"]["devices"]) == 8


def test_render_refuses_an_invalid_overlay_in_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = write(tmp_path / "o", "bad.yaml", OVERLAY.replace("count: 8", "cont: 8"))
    code, _, err = run_cli(
        capsys, "render", "--overlay", str(tmp_path / "o"), "--node", write(tmp_path, "n.yaml", NODES)
    )
    assert code == 1
    assert f"{bad}: error: spec.resourceSlices[0].spec.devices[0].cont: unknown field" in err


def test_chart_values_device_fields_are_checked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    values = write(
        tmp_path,
        "values.yaml",
        "replicaCount: 1\nconfig:\n  driver: gpu.example.com\n  mappings:\n  - name: m\n"
        "    nodeSelector: {matchLabels: {a: b}}\n    resourceSlice: {devices: [{name: gpu, cont: 2}]}\n",
    )
    code, out, _ = run_cli(capsys, "validate", values)
    assert code == 1
    assert out == (
        f"{values} (Helm values): error: config.mappings[0].resourceSlice.devices[0].cont: unknown field; "
        "fix: did you mean 'count'?\n"
    )


# --- --kubernetes-version and --feature-gates --------------------------------------------------
TAINTED_OVERLAY = """
apiVersion: test.karpenter.sh/v1alpha1
kind: DRANodeOverlay
metadata: {name: tainted}
spec:
  requirements: []
  resourceSlices:
  - spec:
      driver: gpu.example.com
      sharedCounters: [{name: mem, counters: {memory: 8Gi}}]
      devices:
      - {name: part, count: 2, consumesCounters: [{counterSet: mem, counters: {memory: 4Gi}}],
         taints: [{key: example.com/maintenance, effect: NoSchedule}]}
"""


def test_validate_checks_for_the_version_and_gates_given(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, "o.yaml", TAINTED_OVERLAY)
    assert run_cli(capsys, "validate", path)[0] == 0  # the newest version takes both features
    code, out, err = run_cli(capsys, "validate", "--kubernetes-version", "1.34.4", path)
    assert code == 1 and "3 error(s)" in err  # counters, their consumption, the taint
    assert "spec.resourceSlices[0].spec.sharedCounters[0]: Kubernetes 1.34.4 drops partitionable devices" in out
    assert "--feature-gates=DRADeviceTaints=true" in out
    gates = "DRADeviceTaints=true,DRAPartitionableDevices=true"
    assert run_cli(capsys, "validate", "--kubernetes-version", "1.34", "--feature-gates", gates, path)[0] == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--kubernetes-version", "1.33"], "Kubernetes 1.33 is not supported: dra-kwok-driver supports 1.34 to 1.37"),
        (["--feature-gates", "DRADeviceTaints"], "write Name=true or Name=false"),
    ],
)
def test_an_unusable_version_or_gate_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], says: str
) -> None:
    code, _, err = run_cli(capsys, "validate", *args, write(tmp_path, "o.yaml", TAINTED_OVERLAY))
    assert code == 2 and says in err


def test_render_lays_counters_out_for_the_version(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    overlay = write(tmp_path, "o.yaml", TAINTED_OVERLAY)
    node = write(tmp_path, "n.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {type: kwok}}\n")
    code, out, _ = run_cli(capsys, "render", "--overlay", overlay, "--node", node)
    assert code == 0
    assert [sorted(s["spec"]) for s in yaml.safe_load_all(out)] == [
        ["driver", "nodeName", "pool", "sharedCounters"],
        ["devices", "driver", "nodeName", "pool"],
    ]
    gates = "DRADeviceTaints=true,DRAPartitionableDevices=true"
    code, out, _ = run_cli(capsys, "render", "--kubernetes-version", "1.34", "--feature-gates", gates,
                           "--overlay", overlay, "--node", node)  # fmt: skip
    assert code == 0
    assert [sorted(s["spec"]) for s in yaml.safe_load_all(out)] == [
        ["devices", "driver", "nodeName", "pool", "sharedCounters"]
    ]


def test_versions_prints_the_support_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "versions")
    assert code == 0 and out.startswith("| feature | fields | 1.34 | 1.35 | 1.36 | 1.37 |")
    assert "| device taints | devices[].taints | needs DRADeviceTaints (alpha) |" in out
