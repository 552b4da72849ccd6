"""Rules of a `simulation` block that depend on its pools and on the Kubernetes targeted: the
features it needs, the devices it names, and what it leaves waiting (binding conditions nobody sets)."""

from __future__ import annotations

from collections.abc import Sequence

from .issues import Issue, Path, Severity
from .simulation import Simulation
from .validation import PoolSpec
from .versions import BINDING, TAINTS, Target


def simulation_issues(path: Path, sim: Simulation | None, pools: Sequence[PoolSpec], target: Target) -> list[Issue]:
    """Findings for the `simulation` at `path` of a source whose pools are `pools`."""
    has_binding_devices = any(d.binding_conditions for p in pools for d in p.devices)
    if sim is None:
        if has_binding_devices:
            return [_nobody_sets(path)]
        return []
    issues: list[Issue] = []
    device_names = {n for p in pools for d in p.devices for n in d.device_names()}
    for i, rule in enumerate(sim.faults):
        rpath = path + ("faults", i)
        if rule.effect != "Remove" and not target.has(TAINTS):
            what, fix = target.why_not(TAINTS)
            issues.append(
                Issue(
                    rpath + ("effect",),
                    what,
                    rule.effect,
                    fix.replace("devices[].taints", "the fault, or use effect Remove"),
                )
            )
        for j, name in enumerate(rule.devices):
            if name not in device_names:
                issues.append(_unknown_device(rpath + ("devices", j), name, device_names))
        if rule.effect != "Remove":
            limit = target.limits.max_taints
            for p in pools:
                for d in p.devices:
                    if len(d.taints) >= limit:
                        issues.append(
                            Issue(
                                rpath + ("effect",),
                                f"device {d.name} of driver {p.driver} already has {len(d.taints)} taints, the most "
                                f"{target.name} allows: a fault's taint would not fit",
                                rule.effect,
                                "remove a template taint, or use effect Remove",
                            )
                        )
    if sim.binding is not None:
        bpath = path + ("binding",)
        if not target.has(BINDING):
            what, fix = target.why_not(BINDING)
            issues.append(Issue(bpath, what, fix=fix.replace(BINDING.fields, "simulation.binding")))
        elif not has_binding_devices:
            issues.append(
                Issue(
                    bpath,
                    "no device of this source has bindingConditions: the scheduler waits for none, so nothing is set",
                    fix="add bindingConditions (and bindingFailureConditions) to the devices, or remove "
                    "simulation.binding",
                    severity=Severity.WARNING,
                )
            )
        for j, name in enumerate(sim.binding.fail_devices):
            if name not in device_names:
                issues.append(_unknown_device(bpath + ("failDevices", j), name, device_names))
        failing = bool(sim.binding.fail_devices) or sim.binding.failure_fraction > 0
        if failing and not any(d.binding_failure_conditions for p in pools for d in p.devices):
            issues.append(
                Issue(
                    bpath,
                    "failures are asked for, but no device has bindingFailureConditions to set",
                    fix="add bindingFailureConditions to the devices, or remove failureFraction and failDevices",
                )
            )
    elif has_binding_devices:
        issues.append(_nobody_sets(path))
    return issues


def _nobody_sets(path: Path) -> Issue:
    return Issue(
        path + ("binding",),
        "devices have bindingConditions but nothing sets them: pods using them wait in the scheduler's PreBind "
        "until bindingTimeout (600s by default) and are then retried",
        fix="add simulation.binding (e.g. {delay: 5s}) so the driver sets them, and run the controller with "
        "--simulate-claims (chart: simulation.claims.enabled=true)",
        severity=Severity.WARNING,
    )


def _unknown_device(path: Path, name: str, known: set[str]) -> Issue:
    shown_names = ", ".join(sorted(known)[:8]) + (", ..." if len(known) > 8 else "")
    return Issue(path, f"no device of this source is named {name!r}", name, f"use one of: {shown_names}")
