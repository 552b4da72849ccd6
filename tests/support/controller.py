"""The real controller (`dra-kwok run`) as a subprocess against a test cluster.

Tests run it exactly as the container's entrypoint does, so they exercise the CLI, kopf's
watches and the API writer for real. Each instance gets its own ConfigMap namespace, managed-by
label value and ports, so instances in one cluster never touch each other's slices.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.wait import wait_until


def free_port() -> int:
    """A port for a process that cannot bind port 0 itself (a chart's values need a number).
    Prefer 'auto' (the controller binds port 0 and logs the port): a number picked here and bound
    later can be taken in between, e.g. as the ephemeral port of an outgoing connection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# The controller's log line for each listener it started ("serving health on port 41235 (...)").
_SERVING = re.compile(r"serving (health|metrics) on port (\d+)")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


@dataclass
class ControllerProcess:
    kubeconfig: Path
    namespace: str
    managed_by: str
    log_path: Path
    extra_args: Sequence[str] = ()
    # 0: the controller takes any free port ('auto') and the port is read from its log once it
    # serves, so no two processes on a busy machine ever race for one.
    metrics_port: int = 0
    health_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    # To run a controller exactly as a manifest describes it (e.g. the chart's Deployment): `argv`
    # replaces the whole command built from the fields above, and `env` is added to the environment
    # (the caller's own DRA_KWOK_* are dropped first). The ports must then be the ones `env` sets.
    argv: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    _log_offset: int = field(default=0, init=False, repr=False)  # where this start's log begins

    def command(self) -> list[str]:
        if self.argv is not None:
            return list(self.argv)
        return [
            sys.executable, "-m", "dra_kwok.cli", "run",
            "--kubeconfig", str(self.kubeconfig),
            "--namespace", self.namespace,
            "--managed-by", self.managed_by,
            "--metrics-port", str(self.metrics_port or "auto"),
            "--health-port", str(self.health_port or "auto"),
            "--bind-address", "127.0.0.1",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, wait: bool = True) -> ControllerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRA_KWOK_")}
        env.update(self.env)
        if self.argv is None or "auto" in (self.env.get("DRA_KWOK_METRICS_PORT"), self.env.get("DRA_KWOK_HEALTH_PORT")):
            self.metrics_port = self.health_port = 0  # a restart binds new ports too
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready()
        return self

    def _read_ports(self) -> bool:
        """Takes the ports of this start's listeners from its log; True once both are known."""
        if not (self.metrics_port and self.health_port):
            text = self.log_path.read_bytes()[self._log_offset :].decode(errors="replace")
            for what, port in _SERVING.findall(text):
                setattr(self, f"{what}_port", int(port))
        return bool(self.metrics_port and self.health_port)

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"controller exited with {self.proc.returncode}:\n{self.log()}")
            if not self._read_ports():
                return False
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as r:
                return bool(r.status == 200)

        wait_until(ready, timeout=timeout, what="the controller to become ready", describe=self.log, interval=0.2)

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers, as in a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-20000:]

    def metrics(self) -> dict[str, float]:
        """Samples by name with labels, e.g. `dra_kwok_api_writes_total{verb="apply"}`."""
        if not self._read_ports():  # started without waiting: the ports show in the log soon
            wait_until(self._read_ports, timeout=30, what="the controller's ports in its log", describe=self.log)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            m = _SAMPLE.match(line)
            if m and not line.startswith("#"):
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        return out

    def metric(self, name: str) -> float:
        """The sum of all samples of `name` over its labels (0 when absent)."""
        return sum(v for k, v in self.metrics().items() if k == name or k.startswith(name + "{"))

    def writes(self) -> float:
        return self.metric("dra_kwok_api_writes_total")


@contextmanager
def running_controller(
    kubeconfig: Path,
    namespace: str,
    workdir: Path,
    extra_args: Sequence[str] = (),
    managed_by: str | None = None,
) -> Iterator[ControllerProcess]:
    """A started controller, stopped afterwards; its log is printed on failure by pytest's capture."""
    ctl = ControllerProcess(
        kubeconfig=kubeconfig,
        namespace=namespace,
        managed_by=managed_by or f"dra-kwok-{namespace}",
        log_path=workdir / f"controller-{time.monotonic_ns()}.log",
        extra_args=extra_args,
    )
    ctl.start()
    try:
        yield ctl
    finally:
        code = ctl.stop()
        if code not in (0, None, -signal.SIGTERM, -signal.SIGKILL):
            print(f"controller exited with {code}; log:\n{ctl.log()}")
