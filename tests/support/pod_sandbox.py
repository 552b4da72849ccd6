"""Runs one container of a Pod the way a kubelet and a container runtime would, without either.

Started by tests/support/pod.py as root under `unshare --mount --net --propagation private`, so
every mount and address below exists only for this process tree and concurrent test runs never
see each other's. Standard library only: it runs before and outside the project's imports.

  network   a private network namespace: loopback up, the `kubernetes` Service's address added
            to it and relayed (TCP -> a Unix socket the test serves -> the apiserver), and
            /etc/hosts naming it kubernetes.default.svc, as cluster DNS would; the container's
            ports (metrics, health) are reachable only through Unix sockets this launcher serves;
            the image's /etc/passwd and /etc/group (with its user) bound over the host's;
  files     the container's volume mounts (an emptyDir becomes a tmpfs, the ServiceAccount's
            projected volume a read-only bind of a directory the test filled as the kubelet
            would), the image's venv at its path, the root filesystem read-only when the
            container's securityContext says so;
  process   the container's command and args resolved through the image's PATH, its exact
            environment (nothing inherited), its working directory, as its uid/gid without
            supplementary groups, capabilities or the right to gain privileges.

On SIGTERM it forwards the signal to the container process (as the kubelet does on deletion),
then prints one JSON line describing what the process wrote into its writable volumes and exits
with the process's exit code.

Usage: pod_sandbox.py SPEC.json (see PodSandbox.spec in tests/support/pod.py)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any


def run(*argv: str) -> None:
    subprocess.run(argv, check=True)


def mount(*args: str) -> None:
    run("mount", *args)


def pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (dst, src):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def serve(listener: socket.socket, connect: Any) -> None:
    """Accepts connections on `listener` and relays each to a fresh `connect()` socket."""
    while True:
        client, _ = listener.accept()
        try:
            upstream = connect()
        except OSError:
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()


def tcp_to_unix(host: str, port: int, path: str) -> None:
    listener = socket.create_server((host, port))

    def connect() -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        return s

    threading.Thread(target=serve, args=(listener, connect), daemon=True).start()


def unix_to_tcp(path: str, port: int) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(16)
    threading.Thread(
        target=serve, args=(listener, lambda: socket.create_connection(("127.0.0.1", port))), daemon=True
    ).start()


def bind_keeping_path_reachable(source: str, target: str) -> None:
    """Bind-mounts `source` at `target` without changing the host's filesystem: an ancestor of
    `target` that the container's user could not enter (e.g. /root, mode 0700) or that lacks the
    next path component (e.g. /opt without venv/) is first covered by a fresh tmpfs, in which the
    rest of the path is created; the process then sees what it needs and nothing else there."""
    stash = f"/run/pod-sandbox/stash{len(os.listdir('/run/pod-sandbox'))}"
    os.makedirs(stash)
    mount("--bind", source, stash)
    parts = Path(target).parts
    for i in range(2, len(parts) + 1):
        ancestor, child = str(Path(*parts[:i])), str(Path(*parts[: i + 1]))
        closed = os.stat(ancestor).st_mode & 0o001 == 0
        if closed or (i < len(parts) and not os.path.exists(child)):
            mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", ancestor)
            break
    os.makedirs(target, exist_ok=True)
    mount("--bind", stash, target)


def main() -> int:
    spec: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
    # Network: loopback, the Service IP, DNS by /etc/hosts, relays.
    run("ip", "link", "set", "lo", "up")
    if not spec["service_ip"].startswith("127."):
        run("ip", "addr", "add", f"{spec['service_ip']}/32", "dev", "lo")
    # Our own /run (the host's stays untouched): relay sockets and stashed mounts live there.
    mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run")
    os.makedirs("/run/pod-sandbox", mode=0o700)
    mount("--bind", spec["hosts_file"], "/etc/hosts")
    for target, source in spec["etc_files"].items():
        mount("--bind", source, target)
    # The apiserver relay connects per connection, after /tmp may have been covered by a volume.
    os.makedirs("/run/pod-sandbox/relay")
    mount("--bind", str(Path(spec["apiserver_socket"]).parent), "/run/pod-sandbox/relay")
    relay = str(Path("/run/pod-sandbox/relay", Path(spec["apiserver_socket"]).name))
    tcp_to_unix(spec["service_ip"], spec["service_port"], relay)
    for name, port in spec["ports"].items():
        unix_to_tcp(str(Path(spec["sockets_dir"]) / f"{name}.sock"), port)

    # Files: the image's venv and interpreter, the container's volumes, a read-only root.
    for source, target in spec["image_mounts"].items():
        bind_keeping_path_reachable(source, target)
    # The test venv's scripts name its interpreter at the venv's own path, and its editable install
    # the checkout's source: when a volume covers them (the chart's emptyDir at /tmp, for a checkout
    # under /tmp), they are bound there again after the volumes, from a stash taken now.
    kept = []
    for path in spec.get("keep_paths", []):
        stash = f"/run/pod-sandbox/keep{len(kept)}"
        os.makedirs(stash)
        mount("--bind", path, stash)
        kept.append((stash, path))
    writable = []
    # Binds first: their sources may lie below a path that an emptyDir then covers (e.g. /tmp).
    for m in sorted(spec["volume_mounts"], key=lambda m: m["kind"] == "emptyDir"):
        os.makedirs(m["mountPath"], exist_ok=True)
        if m["kind"] == "emptyDir":
            mount("-t", "tmpfs", "-o", f"mode=1777,size={m['sizeLimit']}", "tmpfs", m["mountPath"])
            writable.append(m["mountPath"])
        else:
            mount("--bind", m["source"], m["mountPath"])
            if m["readOnly"]:
                mount("-o", "remount,bind,ro", m["mountPath"])
    restored = []
    for stash, path in kept:
        if not os.path.exists(path):  # covered by a volume
            os.makedirs(path, exist_ok=True)
            mount("--bind", stash, path)
            restored.append(path)
    if spec["read_only_root"]:
        for target in [*spec["image_mounts"].values(), *restored, "/etc/hosts", *spec["etc_files"], "/"]:
            mount("-o", "remount,bind,ro", target)

    uid, gid = spec["uid"], spec["gid"]
    setpriv = [
        "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all",
    ]  # fmt: skip
    if spec["no_new_privileges"]:
        setpriv.append("--no-new-privs")
    proc = subprocess.Popen(
        [*setpriv, "--", *spec["argv"]], env=spec["env"], cwd=spec["workdir"], close_fds=True
    )  # fmt: skip

    def forward(signum: int, _frame: Any) -> None:
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = proc.wait()
    written = sorted(
        str(Path(root, f).relative_to("/"))
        for d in writable
        for root, _dirs, files in os.walk(d)
        if not any(Path(root).is_relative_to(r) for r in restored)  # the venv bound back, not written
        for f in files
    )
    print(json.dumps({"exit_code": code, "written": written}), flush=True)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
