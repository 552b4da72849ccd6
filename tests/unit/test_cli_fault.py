"""`dra-kwok fault`: the command line, the merge patch it sends (metadata.annotations only), and its
exit codes, against a fake API holding one Node (shell/fault_request.py reads and patches it)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from dra_kwok.cli import main
from dra_kwok.core.fault_annotation import FAULTS_ANNOTATION
from dra_kwok.shell import fault_request
from dra_kwok.shell.api import NODES_PATH, ApiError, NotFound

STAMP = re.compile(r"@\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class FakeApi:
    """The nodes of a cluster, and the patches sent."""

    def __init__(self, nodes: dict[str, dict[str, Any]], fail: ApiError | None = None) -> None:
        self.nodes = nodes
        self.fail = fail
        self.patches: list[tuple[str, Mapping[str, Any]]] = []
        self.closed = False
        self.kubeconfigs: list[str | None] = []  # what each client was loaded from

    def _node(self, path: str) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        name = path.removeprefix(f"{NODES_PATH}/")
        if name not in self.nodes:
            raise NotFound(404, "Not Found", f'nodes "{name}" not found')
        return self.nodes[name]

    async def get(self, path: str, verb: str = "get") -> Any:
        return self._node(path)

    async def merge_patch(self, path: str, body: Mapping[str, Any], verb: str = "patch") -> Any:
        node = self._node(path)
        self.patches.append((path, body))
        annotations = node.setdefault("metadata", {}).setdefault("annotations", {})
        for key, value in body["metadata"]["annotations"].items():
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value
        return node

    async def close(self) -> None:
        self.closed = True


def node(name: str, faults: str | None = None) -> dict[str, Any]:
    annotations = {"kwok.x-k8s.io/node": "fake"}
    if faults is not None:
        annotations[FAULTS_ANNOTATION] = faults
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "annotations": annotations}}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi({"kwok-1": node("kwok-1", "gpu-1=NoSchedule@2026-12-01T08:00:00Z")})

    async def load(kubeconfig: str | None, pool_size: int) -> object:
        fake.kubeconfigs.append(kubeconfig)
        return object()

    monkeypatch.setattr(fault_request, "load_api_client", load)
    monkeypatch.setattr(fault_request, "KubeApi", lambda client, concurrency: fake)
    return fake


def faults_of(api: FakeApi, name: str = "kwok-1") -> str | None:
    value = api.nodes[name]["metadata"]["annotations"].get(FAULTS_ANNOTATION)
    return None if value is None else str(value)


def test_a_fault_is_merged_stamped_and_sent_as_a_merge_patch_of_the_annotation_only(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fault", "kwok-1", "gpu-0=NoExecute", "gpu.example.com/gpu-2=Remove", "--kubeconfig", "kc"]) == 0
    value = faults_of(api)
    assert value is not None
    old, new, qualified = value.split(",")
    assert old == "gpu-1=NoSchedule@2026-12-01T08:00:00Z"  # kept, time and all
    assert new.startswith("gpu-0=NoExecute@") and STAMP.search(new)
    assert qualified.startswith("gpu.example.com/gpu-2=Remove@") and STAMP.search(qualified)
    assert api.patches == [(f"{NODES_PATH}/kwok-1", {"metadata": {"annotations": {FAULTS_ANNOTATION: value}}})]
    assert capsys.readouterr().out.strip() == value
    assert api.kubeconfigs == ["kc"]
    assert api.closed


def test_an_entry_for_the_same_device_is_replaced_and_a_given_time_is_kept(api: FakeApi) -> None:
    assert main(["fault", "kwok-1", "gpu-1=Remove@2026-11-30T23:00:00Z"]) == 0
    assert faults_of(api) == "gpu-1=Remove@2026-11-30T23:00:00Z"


def test_recover_removes_entries_and_the_annotation_once_empty(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fault", "kwok-1", "gpu-0=NoSchedule"]) == 0
    assert main(["fault", "kwok-1", "--recover", "gpu-1"]) == 0
    assert (faults_of(api) or "").startswith("gpu-0=NoSchedule@")
    assert main(["fault", "kwok-1", "--recover", "gpu-0"]) == 0
    assert faults_of(api) is None
    assert api.patches[-1][1] == {"metadata": {"annotations": {FAULTS_ANNOTATION: None}}}
    assert capsys.readouterr().out.splitlines()[-1] == "(no faults)"


def test_recover_all_removes_the_annotation(api: FakeApi) -> None:
    assert main(["fault", "kwok-1", "--recover-all"]) == 0
    assert faults_of(api) is None
    assert api.patches == [(f"{NODES_PATH}/kwok-1", {"metadata": {"annotations": {FAULTS_ANNOTATION: None}}})]


def test_list_prints_the_entries_and_writes_nothing(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.nodes["kwok-1"]["metadata"]["annotations"][FAULTS_ANNOTATION] = "gpu-1=NoSchedule,gpu-2=Broken"
    assert main(["fault", "kwok-1", "--list"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "gpu-1=NoSchedule"
    assert "'gpu-2=Broken': effect must be NoSchedule, NoExecute or Remove" in out.err
    api.nodes["kwok-1"]["metadata"]["annotations"].pop(FAULTS_ANNOTATION)
    assert main(["fault", "kwok-1", "--list"]) == 0
    assert capsys.readouterr().out.strip() == "(no faults)"
    assert api.patches == []


def test_dry_run_prints_the_patch_and_sends_nothing(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    before = faults_of(api)
    assert main(["fault", "kwok-1", "gpu-0=NoExecute@2026-12-01T10:00:00Z", "--dry-run"]) == 0
    patch = json.loads(capsys.readouterr().out)
    assert patch == {"metadata": {"annotations": {FAULTS_ANNOTATION: f"{before},gpu-0=NoExecute@2026-12-01T10:00:00Z"}}}
    assert api.patches == [] and faults_of(api) == before
    assert main(["fault", "kwok-1", "--recover-all", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out) == {"metadata": {"annotations": {FAULTS_ANNOTATION: None}}}
    assert api.patches == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gpu-0=Broken"], "fault 'gpu-0=Broken': effect must be NoSchedule, NoExecute or Remove (got 'Broken')"),
        (["gpu-0"], "fault 'gpu-0': write DEVICE=EFFECT, e.g. gpu-0=NoExecute"),
        (["GPU_0=Remove"], "fault 'GPU_0=Remove': device name 'GPU_0'"),
        (["Bad_Driver/gpu-0=Remove"], "fault 'Bad_Driver/gpu-0=Remove': driver 'Bad_Driver'"),
        (["gpu-0=Remove@yesterday"], "time 'yesterday' is not RFC 3339; write e.g. 2026-12-01T10:00:00Z"),
        ([], "name faults (DEVICE=EFFECT), --recover DEVICE..., --recover-all or --list"),
        (["gpu-0=Remove", "--list"], "--list reads only"),
        (["gpu-0=Remove", "--recover-all"], "--recover-all removes every fault"),
    ],
)
def test_a_bad_value_or_usage_exits_2_naming_it_and_sends_nothing(
    api: FakeApi, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["fault", "kwok-1", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dra-kwok fault: ") and message in err, err
    assert api.patches == []


def test_an_unknown_node_exits_1_naming_it(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fault", "kwok-9", "gpu-0=NoExecute"]) == 1
    assert "node 'kwok-9' not found" in capsys.readouterr().err
    assert main(["fault", "kwok-9", "--list"]) == 1
    assert "node 'kwok-9' not found" in capsys.readouterr().err


def test_a_refusal_exits_1_with_the_servers_message(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.fail = ApiError(403, "Forbidden", 'nodes "kwok-1" is forbidden: cannot patch')
    assert main(["fault", "kwok-1", "gpu-0=NoExecute"]) == 1
    assert 'dra-kwok fault: node kwok-1: 403 Forbidden: nodes "kwok-1" is forbidden' in capsys.readouterr().err


def test_bad_entries_already_on_the_node_are_dropped_with_a_message(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.nodes["kwok-1"]["metadata"]["annotations"][FAULTS_ANNOTATION] = "gpu-1=Broken"
    assert main(["fault", "kwok-1", "gpu-0=Remove@2026-12-01T10:00:00Z"]) == 0
    assert faults_of(api) == "gpu-0=Remove@2026-12-01T10:00:00Z"
    assert "dropped a bad entry: fault 'gpu-1=Broken'" in capsys.readouterr().err


def test_no_usable_kubeconfig_exits_2_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "kubeconfig"
    empty.write_text("apiVersion: v1\nkind: Config\n")
    assert main(["fault", "kwok-1", "--list", "--kubeconfig", str(empty)]) == 2
    assert "give --kubeconfig PATH or set $KUBECONFIG" in capsys.readouterr().err
