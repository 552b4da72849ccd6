"""Prometheus metrics. No per-node or per-slice label values: cardinality stays fixed at any scale."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("dra_kwok_reconciles_total", "Node reconciliations, by result.", ["result"])
RECONCILE_ERRORS = Counter(
    "dra_kwok_reconcile_errors_total", "Node reconciliations that failed, by reason.", ["reason"]
)
API_REQUESTS = Counter(
    "dra_kwok_api_requests_total", "Requests to the kube-apiserver, by verb and HTTP code.", ["verb", "code"]
)
API_WRITES = Counter("dra_kwok_api_writes_total", "Successful writes of ResourceSlices, by verb.", ["verb"])
PUBLISH_LATENCY = Histogram(
    "dra_kwok_publish_latency_seconds",
    "Time from a node's first event to its pools being complete.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
QUEUE_DEPTH = Gauge("dra_kwok_queue_depth", "Nodes waiting to be reconciled.")
MANAGED_NODES = Gauge("dra_kwok_managed_nodes", "KWOK nodes known to the controller.")
MANAGED_SLICES = Gauge("dra_kwok_managed_slices", "ResourceSlices carrying this controller's managed-by label.")
CONFIG_RELOADS = Counter(
    "dra_kwok_config_reloads_total",
    "Configuration loads, by source (configmap, overlay) and result.",
    ["source", "result"],
)
RESYNCS = Counter("dra_kwok_resyncs_total", "Periodic safety-net full resyncs.")
WATCH_EVENTS = Counter("dra_kwok_watch_events_total", "Watch events received, by kind (node, slice).", ["kind"])
WATCH_READS = Counter(
    "dra_kwok_watch_reads_total",
    "Reads of a watch's body, by kind: events / reads is how many events one read carried (--node-watch-pace).",
    ["kind"],
)
READY = Gauge("dra_kwok_ready", "1 while /readyz says ready: the apiserver accepts the controller's requests.")
NOT_READY = Gauge(
    "dra_kwok_not_ready",
    "1 for the reason the controller is not ready (starting, unauthorized, forbidden, unreachable).",
    ["reason"],
)
PUBLISH_PROBLEMS = Counter(
    "dra_kwok_publish_problems_total",
    "Writes of a node's slices the apiserver rejected (rejected) or stored without some fields (fields_dropped).",
    ["reason"],
)
CONFIG_PARSE = Histogram(
    "dra_kwok_config_parse_seconds",
    "Time to parse and validate a changed config.yaml (in a worker thread; an unchanged text is not parsed).",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DRA_FEATURE = Gauge(
    "dra_kwok_dra_feature_enabled",
    "1 for each DRA slice feature the apiserver keeps (learned at startup), 0 for one it drops: "
    "templates that use a 0 feature are refused in the overlay status and the ConfigMap's Events.",
    ["feature"],
)
KUBERNETES_MINOR = Gauge("dra_kwok_kubernetes_minor", "The Kubernetes minor version published for (34 for 1.34).")
# --- simulation (a source's `simulation`): counted in total, never per node or claim ------------
_DELAY_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600)
PUBLISH_DELAY = Histogram(
    "dra_kwok_publish_delay_seconds",
    "Nodes with a publishDelay: the delay configured, and the actual time from the Node's creation to its "
    "pools being complete (kind=configured|actual).",
    ["kind"],
    buckets=_DELAY_BUCKETS,
)
FAULTS_ACTIVE = Gauge("dra_kwok_faults_active", "Device faults applied to published slices now (taints or removals).")
FAULT_PROBLEMS = Counter(
    "dra_kwok_fault_problems_total", "Faults that could not be applied (logged with the fix), counted per decision."
)
CLAIM_STATUS_WRITES = Counter(
    "dra_kwok_claim_status_writes_total",
    "Writes of our entries in ResourceClaims' status.devices, by result.",
    ["result"],
)
BINDING_CONDITIONS = Counter(
    "dra_kwok_binding_conditions_total",
    "Devices whose binding conditions were set (result=set) or whose failure condition was set (result=failed).",
    ["result"],
)
CLAIMS_HELD = Gauge("dra_kwok_claims_held", "Allocated ResourceClaims held by the claim writer (--simulate-claims).")
NODE_OVERLAYS = Gauge(
    "dra_kwok_node_overlays",
    "Karpenter NodeOverlays derived from DRANodeOverlays and desired now (--karpenter-node-overlays).",
)
NODE_OVERLAY_WRITES = Counter(
    "dra_kwok_node_overlay_writes_total",
    "Writes of derived Karpenter NodeOverlays, by result (applied, deleted, conflict, rejected, error).",
    ["result"],
)
LEADER = Gauge(
    "dra_kwok_leader", "1 while this replica holds the leader Lease and writes (--leader-elect); 0 standing by."
)
LEADER_TRANSITIONS = Counter("dra_kwok_leader_transitions_total", "Times this replica became the leader.")
