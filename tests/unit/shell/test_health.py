"""Readiness from the outcomes of the controller's own requests: what makes it not ready, what
clears each problem, and that the reason is exported (the clock is the real monotonic one; the
grace period is made short instead of faking time)."""

from __future__ import annotations

import time

from dra_kwok.shell import metrics
from dra_kwok.shell.health import ApiHealth, Permission

SLICE = "/apis/resource.k8s.io/v1/resourceslices/n1-devices"


def started(grace: float = 30.0) -> ApiHealth:
    h = ApiHealth(grace)
    h.started = True
    return h


def test_not_ready_until_started() -> None:
    h = ApiHealth()
    assert h.problem == "starting" and h.reason == "starting"
    h.started = True
    assert h.problem is None


def test_a_forbidden_write_makes_it_not_ready_until_that_permission_works_again() -> None:
    h = started()
    h.record("apply", SLICE, 403, 'resourceslices "n1-devices" is forbidden: User "system:serviceaccount:x:y"')
    assert h.reason == "forbidden"
    assert "may not patch resourceslices.resource.k8s.io" in (h.problem or "")
    h.record("list", "/api/v1/nodes", 200)  # another permission working says nothing about this one
    assert h.reason == "forbidden"
    h.record("apply", "/apis/resource.k8s.io/v1/resourceslices/other", 201)
    assert h.problem is None
    assert metrics.READY._value.get() == 1


def test_a_probe_that_finds_the_permission_granted_clears_it() -> None:
    h = started()
    h.record("status", "/apis/test.karpenter.sh/v1alpha1/dranodeoverlays/o/status", 403)
    (perm,) = h.forbidden
    assert perm == Permission("patch", "test.karpenter.sh", "dranodeoverlays", "status")
    assert perm.attributes() == {
        "verb": "patch",
        "group": "test.karpenter.sh",
        "resource": "dranodeoverlays",
        "subresource": "status",
    }
    h.allowed(perm)
    assert h.problem is None


def test_namespaced_permissions_name_their_namespace() -> None:
    perm = Permission.of("event", "/api/v1/namespaces/karpenter/events")
    assert perm == Permission("create", "", "events", namespace="karpenter")
    assert str(perm) == "create events in namespace karpenter"


def test_401_is_cleared_by_any_answer_that_passed_authentication() -> None:
    h = started()
    h.record("list", "/api/v1/nodes", 401, "Unauthorized")
    assert h.reason == "unauthorized"
    assert metrics.NOT_READY.labels(reason="unauthorized")._value.get() == 1
    h.record("get", "/api/v1/namespaces/k/configmaps/c", 404)
    assert h.problem is None
    assert metrics.NOT_READY.labels(reason="unauthorized")._value.get() == 0


def test_connection_errors_make_it_unreachable_only_after_the_grace_period() -> None:
    h = started(grace=0.2)
    h.record("watch", "/api/v1/nodes", 0)
    assert h.problem is None, "a short outage is not a reason to drop out of a Service"
    time.sleep(0.25)
    assert h.reason == "unreachable"
    h.record("watch", "/api/v1/nodes", 200)
    assert h.problem is None
    h.record("watch", "/api/v1/nodes", 0)
    assert h.problem is None, "the grace period starts again"


def test_server_errors_are_answers_not_outages_and_change_no_permission() -> None:
    h = started(grace=0.0)
    h.record("apply", SLICE, 403)
    h.record("apply", SLICE, 503)
    assert h.reason == "forbidden"
    assert h.failing_since is None
