"""Learn, once at startup, the Kubernetes the controller publishes for: the apiserver's version
(`/version`) and which DRA fields it keeps, by sending one ResourceSlice per feature with
`dryRun=All` (validated and admitted, never stored) and reading what comes back. A feature whose
probe gets no clear answer keeps its version's default; the decisions are the core's
(`versions.probed_target`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from ..core import versions
from ..core.versions import Target
from . import metrics
from .api import SLICES_PATH, ApiError, KubeApi

log = logging.getLogger("dra_kwok.version")


async def learn_target(api: KubeApi, version_override: str | None = None, gates: str = "") -> Target:
    """The target for this apiserver. `version_override` (--kubernetes-version) replaces
    /version and the probes; `gates` (--feature-gates) corrects whatever was learned."""
    overrides = versions.parse_gates(gates) if gates else {}
    if version_override:
        found = versions.target(version_override, overrides, "flags")
        _report(found)
        return found
    info = await api.request("GET", "/version", verb="get")
    git_version = str((info or {}).get("gitVersion") or "")
    version = _supported(git_version)
    answers = await _probe(api, versions.parse_version(version)[0])
    found = versions.probed_target(version, answers)
    if overrides:
        found = versions.with_gates(found, overrides, "the apiserver and flags")
    _report(found)
    return found


def _supported(git_version: str) -> str:
    """The version to target: the apiserver's, or the nearest supported one with an error line."""
    try:
        versions.parse_version(git_version)
        return git_version.lstrip("v")
    except versions.VersionError as exc:
        minor = versions.NEWEST
        with contextlib.suppress(IndexError, ValueError):
            minor = int(git_version.lstrip("v").split(".")[1])
        nearest = versions.OLDEST if minor < versions.OLDEST else versions.NEWEST
        log.error("%s; publishing as for Kubernetes 1.%d", exc, nearest)
        return f"1.{nearest}"


async def _probe(api: KubeApi, minor: int) -> dict[str, bool]:
    async def one(feature: str, spec: dict[str, object]) -> tuple[str, bool | None]:
        name = f"dra-kwok-probe-{secrets.token_hex(4)}"
        try:
            stored = await api.request(
                "POST",
                SLICES_PATH,
                query={"dryRun": "All"},
                body=versions.probe_manifest(name, spec),
                verb="probe",
            )
        except ApiError as exc:
            if exc.status == 422:
                # What a gate that is off leaves of some fields is invalid (a list attribute without
                # its list has no value): the refusal is the answer. Counted under verb="probe".
                log.debug("the apiserver refused the %s probe: %s", feature, exc.message)
                return feature, False
            log.warning("could not learn whether the apiserver keeps %s (%s): assuming its default", feature, exc)
            return feature, None
        return feature, versions.probe_kept(feature, (stored or {}).get("spec") or {})

    results = await asyncio.gather(*(one(f, spec) for f, spec in versions.probe_specs(minor).items()))
    return {f: kept for f, kept in results if kept is not None}


def _report(found: Target) -> None:
    log.info("publishing for %s", found.describe())
    for feature in versions.SLICE_FEATURES:
        metrics.DRA_FEATURE.labels(feature=feature.key).set(1 if found.has(feature) else 0)
    metrics.KUBERNETES_MINOR.set(found.minor)
