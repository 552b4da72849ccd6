"""A container of a real Pod, run the way the kubelet and the image would run it, without either.

There is no container engine here, so the image is never built; instead the image's runtime
settings are read from the Dockerfile itself (ENTRYPOINT, CMD, USER, ENV, WORKDIR, the venv path,
the user's home), so they cannot drift from what is tested, and the Pod's spec is read from the
apiserver after admission (the ServiceAccount admission plugin adds the projected token volume).
Then, as a kubelet would: the ServiceAccount volume is filled (a TokenRequest bound to the Pod,
the cluster CA from `kube-root-ca.crt`, the namespace), the Service environment is added
(KUBERNETES_SERVICE_HOST/PORT), and the container is started by tests/support/pod_sandbox.py in a
private mount and network namespace: its volumes mounted, the root filesystem read-only, as its
uid/gid, at the `kubernetes` Service's ClusterIP, which is relayed to the apiserver.

What differs from the image, and why it does not matter for what is tested: the venv at the
image's venv path is the test venv (`pip install -e .[dev]` of the same pyproject.toml instead of
`pip install .`: the same project and runtime dependency ranges, plus dev tools the controller
never imports), and the interpreter is the host's Python 3.11 instead of python:3.11-slim's.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

import dra_kwok
from tests.support.cluster import REPO_ROOT, Cluster
from tests.support.wait import wait_until

DOCKERFILE = REPO_ROOT / "Dockerfile"
SANDBOX = Path(__file__).with_name("pod_sandbox.py")
# The environment python:3.11-slim itself sets, which the Dockerfile's ENV extends ($PATH).
BASE_IMAGE_ENV = {
    "PATH": "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


# --- the Dockerfile ------------------------------------------------------------------------------
@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [args for o, args in self.instructions if o == op]

    def last(self, op: str) -> str | None:
        found = self.all(op)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages and their instructions, continuation lines joined, comments dropped."""
    stages: list[Stage] = []
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    for line in logical:
        op, _, args = line.partition(" ")
        op, args = op.upper(), " ".join(args.split())
        if op == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"{op} before FROM"
            stages[-1].instructions.append((op, args))
    return stages


def expand(value: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), value)


@dataclass(frozen=True)
class Image:
    """What the Dockerfile's final stage sets for the process it runs."""

    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    user: tuple[int, int]
    workdir: str
    home: str
    passwd_entry: str
    group_entry: str
    venv: str
    builder_copies: list[str]
    builder_steps: list[str]

    @staticmethod
    def from_dockerfile(path: Path = DOCKERFILE) -> Image:
        stages = parse_dockerfile(path.read_text())
        final = stages[-1]
        env = dict(BASE_IMAGE_ENV)
        for args in final.all("ENV"):
            for word in shlex.split(args):
                key, sep, value = word.partition("=")
                assert sep, f"ENV {args!r}: only the KEY=VALUE form is understood"
                env[key] = expand(value, env)
        user = final.last("USER")
        assert user and re.fullmatch(r"\d+:\d+", user), f"USER {user!r}: expected a numeric uid:gid"
        uid, gid = (int(x) for x in user.split(":"))
        entrypoint, cmd = json.loads(final.last("ENTRYPOINT") or "[]"), json.loads(final.last("CMD") or "[]")
        # The venv: COPY --from=<builder> SRC DST, where the builder made SRC with `python -m venv`.
        (copy,) = [c for c in final.all("COPY") if c.startswith("--from=")]
        source_stage, src, dst = copy.removeprefix("--from=").split()
        builder = next(s for s in stages if s.name == source_stage)
        assert any(f"python -m venv {src}" in r for r in builder.all("RUN")), f"{src} is not a venv of {source_stage}"
        assert src == dst, f"the venv moved from {src} to {dst}: its scripts' shebangs would break"
        # The user and group the final stage adds (useradd/groupadd): the image's /etc/passwd and
        # /etc/group entries, and the home the container runtime sets as HOME.
        run = " && ".join(final.all("RUN"))
        user_m = re.search(rf"useradd [^&]*--uid {uid} [^&]*?(\S+)(?:\s*&&|$)", run)
        group_m = re.search(rf"groupadd [^&]*--gid {gid} [^&]*?(\S+)(?:\s*&&|$)", run)
        assert user_m and group_m, f"the Dockerfile adds no user {uid} / group {gid} (useradd, groupadd)"
        useradd = user_m.group(0)
        home_m, shell_m = re.search(r"--home-dir (\S+)", useradd), re.search(r"--shell (\S+)", useradd)
        home = home_m.group(1) if home_m else "/"
        passwd = f"{user_m.group(1)}:x:{uid}:{gid}::{home}:{shell_m.group(1) if shell_m else '/bin/sh'}"
        steps = [step.strip() for r in builder.all("RUN") for step in r.split("&&")]
        copies = [c.split()[:-1] for c in builder.all("COPY")]
        return Image(
            entrypoint=entrypoint,
            cmd=cmd,
            env=env,
            user=(uid, gid),
            workdir=final.last("WORKDIR") or "/",
            home=home,
            passwd_entry=passwd,
            group_entry=f"{group_m.group(1)}:x:{gid}:",
            venv=dst,
            builder_copies=[p for c in copies for p in c],
            builder_steps=steps,
        )


# --- the kubelet's part --------------------------------------------------------------------------
class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self._path)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (dst, src):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class ApiserverRelay:
    """A Unix socket whose connections are relayed to the apiserver's TCP address: the sandbox's
    network namespace reaches the host only through it."""

    def __init__(self, path: Path, host: str, port: int, down_for: float = 0.0) -> None:
        self.path = path
        self._address = (host, port)
        # Until then every connection is closed at once: an apiserver that cannot be reached yet.
        self._down_until = time.monotonic() + down_for
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(32)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if time.monotonic() < self._down_until:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._address, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._listener.close()


def certificate_names(host: str, port: int, ca: str, name: str) -> bool:
    """Whether the server at host:port presents a certificate, signed by `ca`, valid for `name`."""
    context = ssl.create_default_context(cadata=ca)
    try:
        with (
            socket.create_connection((host, port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=name),
        ):
            return True
    except ssl.SSLCertVerificationError:
        return False


def fill_service_account_volume(
    cluster: Cluster, pod: Mapping[str, Any], volume: Mapping[str, Any], dest: Path
) -> None:
    """Writes the files of the projected ServiceAccount volume (kube-api-access-*) as the kubelet
    does: a token requested for the Pod's ServiceAccount and bound to the Pod, the ConfigMap's CA,
    the downward API's namespace."""
    meta, spec = pod["metadata"], pod["spec"]
    dest.mkdir(mode=0o755)
    mode = volume["projected"].get("defaultMode", 0o644)
    for source in volume["projected"]["sources"]:
        if "serviceAccountToken" in source:
            sat = source["serviceAccountToken"]
            token = cluster.kubectl(
                "create", "token", spec["serviceAccountName"], "-n", meta["namespace"],
                "--bound-object-kind=Pod", f"--bound-object-name={meta['name']}",
                f"--bound-object-uid={meta['uid']}", f"--duration={sat.get('expirationSeconds', 3607)}s",
            ).strip()  # fmt: skip
            files = {sat["path"]: token}
        elif "configMap" in source:
            cm = cluster.get_json("configmap", source["configMap"]["name"], "-n", meta["namespace"])
            files = {item["path"]: cm["data"][item["key"]] for item in source["configMap"]["items"]}
        elif "downwardAPI" in source:
            files = {}
            for item in source["downwardAPI"]["items"]:
                assert item["fieldRef"]["fieldPath"] == "metadata.namespace", item
                files[item["path"]] = meta["namespace"]
        else:
            raise AssertionError(f"unexpected projected source {source}")
        for name, content in files.items():
            (dest / name).write_text(content)
            (dest / name).chmod(mode)


@dataclass
class PodContainer:
    """One container of `pod`, started in the sandbox by `start()`."""

    cluster: Cluster
    pod: dict[str, Any]
    image: Image
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    relay: ApiserverRelay | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    sockets_dir: Path | None = None
    apiserver_down_for: float = 0.0  # seconds from start() during which the apiserver is unreachable

    @property
    def container(self) -> dict[str, Any]:
        (container,) = self.pod["spec"]["containers"]
        return dict(container)

    @property
    def log_path(self) -> Path:
        return self.workdir / "container.log"

    def user(self) -> tuple[int, int]:
        """runAsUser/runAsGroup of the container, else of the pod, else the image's USER."""
        pod_sc, sc = self.pod["spec"].get("securityContext") or {}, self.container.get("securityContext") or {}
        uid = sc.get("runAsUser", pod_sc.get("runAsUser", self.image.user[0]))
        gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", self.image.user[1]))
        return int(uid), int(gid)

    def environment(self, service_host: str, service_port: int) -> dict[str, str]:
        """The image's ENV, HOME and HOSTNAME from the runtime, the Service variables the kubelet
        adds, then the container's env (literal values, and the Pod's name from the downward API),
        which wins."""
        env = {**self.image.env, "HOSTNAME": self.pod["metadata"]["name"], "HOME": self.image.home}
        env.update(
            KUBERNETES_SERVICE_HOST=service_host,
            KUBERNETES_SERVICE_PORT=str(service_port),
            KUBERNETES_SERVICE_PORT_HTTPS=str(service_port),
            KUBERNETES_PORT=f"tcp://{service_host}:{service_port}",
        )
        for var in self.container.get("env", []):
            source = var.get("valueFrom")
            if source is not None:  # the downward API, as far as the chart uses it: the Pod's name
                field_ref = source.get("fieldRef") or {}
                assert set(source) == {"fieldRef"} and field_ref.get("fieldPath") == "metadata.name", (
                    f"env {var}: not supported here"
                )
                env[var["name"]] = self.pod["metadata"]["name"]
                continue
            env[var["name"]] = str(var.get("value", ""))
        return env

    def argv(self) -> list[str]:
        """Kubernetes' rule: `command` replaces the ENTRYPOINT, `args` the CMD (and a `command`
        without `args` drops the CMD)."""
        command, args = self.container.get("command"), self.container.get("args")
        if command:
            return [*command, *(args or [])]
        return [*self.image.entrypoint, *(args if args is not None else self.image.cmd)]

    def start(self) -> PodContainer:
        service = self.cluster.get_json("service", "kubernetes", "-n", "default")
        service_ip = service["spec"]["clusterIP"]
        (https,) = [p for p in service["spec"]["ports"] if p["name"] == "https"]
        kubeconfig = yaml.safe_load(self.cluster.kubeconfig.read_text())
        server = urlparse(kubeconfig["clusters"][0]["cluster"]["server"])
        assert server.hostname and server.port
        ca = base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
        if not certificate_names(server.hostname, server.port, ca, service_ip):
            # kwokctl's serving certificate names 127.0.0.1 and kubernetes.default.svc, but not the
            # Service's ClusterIP (a real cluster's does): the Service is then at 127.0.0.1 in the
            # sandbox. The process finds it the same way, by KUBERNETES_SERVICE_HOST/PORT.
            service_ip = "127.0.0.1"
            assert certificate_names(server.hostname, server.port, ca, service_ip)
        # Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer.
        sockets = self.sockets_dir = Path(tempfile.mkdtemp(prefix="dk-pod-"))
        self.relay = ApiserverRelay(sockets / "apiserver.sock", server.hostname, server.port, self.apiserver_down_for)
        hosts = self.workdir / "hosts"
        names = "kubernetes kubernetes.default kubernetes.default.svc kubernetes.default.svc.cluster.local"
        hosts.write_text(f"127.0.0.1 localhost\n{service_ip} {names}\n")
        hosts.chmod(0o644)
        # The image's /etc/passwd and /etc/group know its user (kopf asks for the user's name).
        etc = {}
        for name, entry in (("passwd", self.image.passwd_entry), ("group", self.image.group_entry)):
            path = etc[f"/etc/{name}"] = self.workdir / name
            path.write_text(Path(f"/etc/{name}").read_text().rstrip("\n") + f"\n{entry}\n")
            path.chmod(0o644)

        volumes = {v["name"]: v for v in self.pod["spec"].get("volumes", [])}
        mounts = []
        for m in self.container.get("volumeMounts", []):
            volume = volumes[m["name"]]
            if "emptyDir" in volume:
                size = str((volume["emptyDir"] or {}).get("sizeLimit", "64Mi"))
                tmpfs_size = re.sub(r"^(\d+)([KMG])i$", lambda q: q.group(1) + q.group(2).lower(), size)
                assert re.fullmatch(r"\d+[kmg]?", tmpfs_size), (
                    f"emptyDir sizeLimit {size} is not one this kubelet knows"
                )
                mounts.append({"kind": "emptyDir", "mountPath": m["mountPath"], "sizeLimit": tmpfs_size})
            elif "projected" in volume:
                source = self.workdir / f"volume-{m['name']}"
                fill_service_account_volume(self.cluster, self.pod, volume, source)
                mounts.append(
                    {
                        "kind": "bind",
                        "mountPath": m["mountPath"],
                        "source": str(source),
                        "readOnly": bool(m.get("readOnly")),
                    }
                )
            else:
                raise AssertionError(f"volume {volume} is not one this kubelet knows")

        sc = self.container.get("securityContext") or {}
        uid, gid = self.user()
        # The test venv stands in for the image's; its interpreter must be reachable as the user
        # (the host's Python may live under /root, mode 0700).
        image_mounts = {sys.prefix: self.image.venv, sys.base_prefix: sys.base_prefix}
        self.spec = {
            "service_ip": service_ip,
            "service_port": https["port"],
            "hosts_file": str(hosts),
            "etc_files": {target: str(source) for target, source in etc.items()},
            "apiserver_socket": str(self.relay.path),
            "sockets_dir": str(sockets),
            "ports": {p["name"]: p["containerPort"] for p in self.container.get("ports", [])},
            "image_mounts": image_mounts,
            "keep_paths": [sys.prefix, str(Path(dra_kwok.__file__).resolve().parents[1])],
            "volume_mounts": mounts,
            "read_only_root": bool(sc.get("readOnlyRootFilesystem")),
            "no_new_privileges": sc.get("allowPrivilegeEscalation") is False,
            "uid": uid,
            "gid": gid,
            "env": self.environment(service_ip, https["port"]),
            "argv": self.argv(),
            "workdir": self.container.get("workingDir") or self.image.workdir,
        }
        spec_path = self.workdir / "sandbox.json"
        spec_path.write_text(json.dumps(self.spec, indent=2))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "unshare", "--mount", "--net", "--propagation", "private", "--",
                    sys.executable, "-I", str(SANDBOX), str(spec_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                # A process group of its own: close() kills the container with it, as a kill of
                # the pod would, instead of leaving it running behind a dead sandbox.
                start_new_session=True,
            )  # fmt: skip
        return self

    def get(self, port_name: str, path: str) -> tuple[int, str]:
        """GET `path` on the container's port `port_name` (through the sandbox's Unix socket)."""
        assert self.sockets_dir is not None
        conn = _UnixHTTPConnection(str(self.sockets_dir / f"{port_name}.sock"))
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 90.0) -> None:
        assert self.proc is not None
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                return True  # exited: no point waiting
            try:
                return self.get("health", "/readyz")[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout=timeout, what="the container's /readyz", describe=self.log, interval=0.3)
        if proc.poll() is not None:
            raise AssertionError(f"the container exited with {proc.returncode}:\n{self.log()}")

    def metrics(self) -> dict[str, float]:
        out = {}
        for line in self.get("metrics", "/metrics")[1].splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def wait(self, timeout: float = 120.0) -> dict[str, Any]:
        """Until the container exits by itself (a Job's pod); returns the sandbox's report."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"the container did not exit within {timeout:.0f}s:\n{self.log()}") from None
        return self.stop()

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM, as the kubelet sends on deletion; returns the sandbox's report (exit code,
        files written into writable volumes)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.close()
        last = [line for line in self.log().splitlines() if line.startswith('{"exit_code"')]
        assert last, f"the sandbox did not report (exit {self.proc.returncode}):\n{self.log()}"
        report: dict[str, Any] = json.loads(last[-1])
        return report

    def close(self) -> None:
        """SIGKILL of the sandbox and the container process (its process group), as of a pod on a
        node that died; removes the relay and its sockets (idempotent)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.relay is not None:
            self.relay.close()
        if self.sockets_dir is not None:
            shutil.rmtree(self.sockets_dir, ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:] if self.log_path.exists() else ""
