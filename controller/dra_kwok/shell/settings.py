"""Controller settings, from flags or environment variables, with defaults that work as is."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.defaults import (
    DEFAULT_CONFIGMAP_KEY,
    DEFAULT_CONFIGMAP_NAME,
    DEFAULT_FIELD_MANAGER,
    DEFAULT_MANAGED_BY,
    DEFAULT_NAMESPACE,
)
from ..core.resolve import KwokNodeRule


@dataclass(frozen=True)
class Settings:
    kubeconfig: str | None = None  # None: in-cluster config, else $KUBECONFIG or ~/.kube/config
    configmap_name: str = DEFAULT_CONFIGMAP_NAME
    configmap_namespace: str = DEFAULT_NAMESPACE
    configmap_key: str = DEFAULT_CONFIGMAP_KEY
    kwok_nodes: KwokNodeRule = field(default_factory=KwokNodeRule)
    managed_by: str = DEFAULT_MANAGED_BY
    field_manager: str = DEFAULT_FIELD_MANAGER
    owned_drivers: frozenset[str] = frozenset()  # --driver: parsed for compatibility, no longer used
    metrics_port: int | None = 8080  # None: not served; 0: any free port (logged)
    health_port: int | None = 8081  # None: not served; 0: any free port (logged)
    bind_address: str = "0.0.0.0"
    log_format: str = "text"  # or "json"
    log_level: str = "INFO"
    concurrency: int = 32  # API requests in flight
    workers: int = 32  # nodes reconciled at once; as many as `concurrency`, so one-slice nodes can use it all
    resync_seconds: float = 300.0  # safety-net full resync; writes nothing when nothing differs
    node_watch_pace: float = 0.2  # seconds between reads of the node watch (shell/api.py PacedContent)
    status_interval: float = 1.0  # overlay status is recomputed at most this often
    unready_after: float = 30.0  # seconds without an answer from the apiserver before /readyz fails
    kubernetes_version: str | None = None  # None: learned from the apiserver (/version and dry-run probes)
    feature_gates: str = ""  # "Gate=true,...": corrects the gates learned or assumed
    # watch ResourceClaims and write status.devices / binding conditions for our devices (needs the
    # chart's simulation.claims RBAC)
    simulate_claims: bool = False
    # keep a Karpenter NodeOverlay (karpenter.sh/v1alpha1) per DRANodeOverlay, with the extended
    # resources DeviceClasses name for its devices as capacity (needs the chart's karpenter RBAC)
    karpenter_node_overlays: bool = False
    # one replica writes, the others stand by: a coordination.k8s.io Lease in `leader_election_namespace`
    # (default: the ConfigMap's) named `leader_election_id` (default: the managed-by value)
    leader_elect: bool = False
    leader_election_namespace: str = ""
    leader_election_id: str = ""
    leader_identity: str = ""  # default: <hostname>_<pid>
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
