"""`dra-kwok run`'s settings from flags and DRA_KWOK_* environment variables (the chart sets the
latter): a flag given on the command line wins over the environment, which wins over the default."""

from __future__ import annotations

import argparse

import pytest

from dra_kwok.cli import build_parser, settings_from_args
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
    assert len(flags) == 17, flags
    for flag in flags:
        name = "DRA_KWOK_" + renamed.get(flag, flag[2:].upper().replace("-", "_"))
        value = {"--kwok-label": "k=v", "--log-format": "json"}.get(flag, "7")
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
            "--concurrency": s.concurrency,
            "--workers": s.workers,
            "--resync-seconds": s.resync_seconds,
        }[flag]
        assert str(shown) in (value, str(float(value)) if value.isdigit() else value), (flag, name, shown)
