"""Whether the controller can do its job, told from the outcomes of its own API requests.

`/readyz` must never say "ready" while every write is refused: a 401 (the token is not accepted),
a 403 (the ServiceAccount lost a permission it needs) or an apiserver that has been unreachable for
longer than a grace period make the controller not ready. Each problem is cleared by a later
success of the same kind of request; while there is one, a probe (a SelfSubjectAccessReview per
refused permission, which any authenticated account may send) checks every few seconds, so the
controller becomes ready again by itself, and a node whose write failed does not wait out its
backoff. An idle controller sends nothing; `/readyz` asks the apiserver at most once a minute when
nothing else has spoken to it for that long, so a permission removed while idle is noticed too.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from . import metrics

log = logging.getLogger("dra_kwok.health")

UNREACHABLE_GRACE = 30.0  # seconds of nothing but connection errors before "unreachable"
PROBE_INTERVAL = 5.0  # seconds between probes while not ready
IDLE_CHECK = 60.0  # /readyz checks the API when nothing has answered for this long

# verb label of KubeApi.request -> the RBAC verb it needs
_RBAC_VERB = {"apply": "patch", "status": "patch", "patch": "patch", "event": "create", "create": "create"}
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[^/?]+)"
    r"(?:/(?P<name>[^/?]+)(?:/(?P<sub>[^/?]+))?)?"
)


@dataclass(frozen=True, slots=True)
class Permission:
    """What a refused request needed, as a SelfSubjectAccessReview's resourceAttributes."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""

    @classmethod
    def of(cls, verb: str, path: str) -> Permission:
        m = _PATH.match(path)
        if m is None:
            return cls(_RBAC_VERB.get(verb, verb), "", path)
        return cls(
            _RBAC_VERB.get(verb, verb),
            m["group"] or "",
            m["resource"],
            m["sub"] or "",
            m["ns"] or "",
        )

    def attributes(self) -> dict[str, str]:
        out = {"verb": self.verb, "group": self.group, "resource": self.resource}
        if self.subresource:
            out["subresource"] = self.subresource
        if self.namespace:
            out["namespace"] = self.namespace
        return out

    def __str__(self) -> str:
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        group = f".{self.group}" if self.group else ""
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.verb} {what}{group}{where}"


class ApiHealth:
    """The problems the API's answers have shown, and whether the controller is ready."""

    def __init__(self, grace: float = UNREACHABLE_GRACE) -> None:
        self.grace = grace
        self.started = False
        self.unauthorized = ""  # the last 401's message while no request has succeeded since
        self.forbidden: dict[Permission, str] = {}  # refused permission -> the apiserver's message
        self.failing_since: float | None = None  # first connection error since the last answer
        self.last_answer = time.monotonic()  # last time the apiserver answered anything
        self._reported: str | None = None

    def record(self, verb: str, path: str, status: int, message: str = "") -> None:
        """One request's outcome: an HTTP status, or 0 for no answer (a connection error)."""
        now = time.monotonic()
        if status == 0:
            if self.failing_since is None:
                self.failing_since = now
        else:
            self.failing_since = None
            self.last_answer = now
            if status == 401:
                self.unauthorized = message or "401 Unauthorized"
            elif status == 403:
                self.forbidden[Permission.of(verb, path)] = message or "403 Forbidden"
            elif status < 400 or status == 404 or status == 409 or status == 422:
                # The apiserver took the credentials and the permission (a 404, 409 or 422 is
                # decided after authorization).
                self.unauthorized = ""
                if self.forbidden:
                    self.forbidden.pop(Permission.of(verb, path), None)
        self.report()

    def allowed(self, permission: Permission) -> None:
        """A probe found the permission granted again."""
        self.forbidden.pop(permission, None)
        self.report()

    @property
    def problem(self) -> str | None:
        """Why the controller is not ready, or None when it is."""
        if not self.started:
            return "starting"
        if self.unauthorized:
            return f"unauthorized: the apiserver does not accept the controller's credentials ({self.unauthorized})"
        if self.forbidden:
            perms = ", ".join(sorted(str(p) for p in self.forbidden))
            return (
                f"forbidden: the ServiceAccount may not {perms} (grant it with the chart's ClusterRole and "
                f"bindings): {next(iter(self.forbidden.values()))}"
            )
        if self.failing_since is not None and time.monotonic() - self.failing_since >= self.grace:
            return f"unreachable: no answer from the apiserver for {time.monotonic() - self.failing_since:.0f}s"
        return None

    @property
    def reason(self) -> str:
        """The problem's first word, for the metric ("" when ready)."""
        problem = self.problem
        return problem.split(":", 1)[0] if problem else ""

    def report(self) -> None:
        """Log and export a change of readiness, once per transition."""
        reason = self.reason
        if reason == (self._reported or ""):
            return
        if reason:
            (log.info if reason == "starting" else log.error)("not ready: %s", self.problem)
        elif self._reported == "starting":
            log.info("ready")
        elif self._reported is not None:
            log.warning("ready again: the apiserver accepts the controller's requests")
        self._reported = reason
        metrics.READY.set(0 if reason else 1)
        for r in ("starting", "unauthorized", "forbidden", "unreachable"):
            metrics.NOT_READY.labels(reason=r).set(1 if r == reason else 0)

    @property
    def needs_probe(self) -> bool:
        return self.started and (bool(self.unauthorized or self.forbidden) or self.failing_since is not None)

    def idle_check_due(self) -> bool:
        return self.started and time.monotonic() - self.last_answer >= IDLE_CHECK
