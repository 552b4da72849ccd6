"""Process and machine figures from /proc, and the kube-apiserver's own metrics."""

from __future__ import annotations

import datetime
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    rss_mb: float  # VmRSS
    peak_rss_mb: float  # VmHWM: the high-water mark since the process started
    cpu_s: float  # utime + stime


def proc_sample(pid: int) -> ProcSample:
    status = Path(f"/proc/{pid}/status").read_text()

    def kb(field: str) -> float:
        m = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
        return int(m.group(1)) / 1024 if m else 0.0

    # Fields after the command name (which may contain spaces) start at state, field 3.
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(stat[11]), int(stat[12])  # fields 14 and 15
    return ProcSample(kb("VmRSS"), kb("VmHWM"), (utime + stime) / _CLK_TCK)


def count_processes(name: str) -> int:
    """Live processes called `name` (zombies, dead but not yet reaped, do not count)."""
    n = 0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() != name:
                    continue
                if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    n += 1
            except OSError:
                continue
    return n


def machine_info(kubernetes_version: str, load_before: list[float], other_apiservers: int) -> dict[str, Any]:
    """The machine, and how busy it was before the benchmark started anything (`load_before`,
    `other_apiservers`: taken before its cluster started, so its own load is not counted)."""
    meminfo = Path("/proc/meminfo").read_text()
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu_model": model.group(1).strip() if model else platform.processor() or "unknown",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kubernetes": kubernetes_version,
        "load_before": load_before,
        "other_kube_apiservers": other_apiservers,
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric_sum(samples: list[tuple[str, dict[str, str], float]], name: str, **match: Any) -> float:
    """Sum of `name` over samples whose labels match; a value may be a set of accepted values."""

    def ok(labels: dict[str, str]) -> bool:
        for k, v in match.items():
            if isinstance(v, set | frozenset):
                if labels.get(k) not in v:
                    return False
            elif labels.get(k) != v:
                return False
        return True

    return sum(v for n, labels, v in samples if n == name and ok(labels))
