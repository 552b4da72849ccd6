#!/usr/bin/env bash
# Starts and stops the local DRA-capable KWOK cluster: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok-controller as plain processes, via `kwokctl create cluster --runtime binary`.
#
# Usage: hack/cluster.sh up|down|status|prune|settings [--name NAME] [--dir DIR] [--port PORT]
#   up      create (or restart) the cluster and wait until it can schedule DRA pods on KWOK nodes;
#           a cluster that is already running and healthy is left alone.
#   down    delete the cluster and its state; no cluster is fine.
#   status  print the components and whether the cluster is healthy (exit 1 if not).
#   prune   delete test clusters (dra-kwok-test-<pid>-*) whose test process is gone.
#   settings  print the feature gates and runtime-config `up` would use for KUBE_VERSION (exit 1
#           for a version outside 1.34-1.37).
#   --name  cluster name (default dra-kwok); --dir  where the kubeconfig and bin/ go (default
#           <repo>/.cluster); --port  kube-apiserver port (default: a free one).
# Environment: KUBE_VERSION (default in hack/versions.env; 1.34 to 1.37), DRA_KWOK_FEATURE_GATES
# (extra gates merged over the version's, e.g. DRADeviceTaints=false), DRA_KWOK_CLUSTER_TIMEOUT.
#
# Every binary comes from the cache filled by hack/build-binaries.sh; kwokctl is given a local path
# for each one it could otherwise download, so nothing is fetched from the network. kwokctl's own
# state (pki, etcd data, pids, logs) lives under $DRA_KWOK_CACHE/kwok, never in the repo.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$root/hack/versions.env"

# kwokctl reads KWOK_WORKDIR for its clusters, cache and default config; pointing it into our cache
# keeps the repo clean and keeps a developer's own ~/.kwok (and its kwok.yaml) out of the picture.
export KWOK_WORKDIR="$DRA_KWOK_CACHE/kwok"
timeout_s="${DRA_KWOK_CLUSTER_TIMEOUT:-180}"
kwok_annotation="kwok.x-k8s.io/node=fake"

log() { echo "cluster.sh: $*" >&2; }
die() { echo "cluster.sh: error: $*" >&2; exit 1; }

usage() {
  sed -n '5,17p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

parse_args() {
  cmd="${1:-}"; [ -n "$cmd" ] || usage; shift
  name="dra-kwok"; dir="$root/.cluster"; port=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --name) name="${2:?--name needs a value}"; shift 2 ;;
      --dir) dir="${2:?--dir needs a value}"; shift 2 ;;
      --port) port="${2:?--port needs a value}"; shift 2 ;;
      -h|--help) usage ;;
      *) log "unknown argument '$1'"; usage ;;
    esac
  done
  # kwokctl uses the name for directories and the kubeconfig context; keep it a DNS label.
  [[ "$name" =~ ^[a-z0-9]([-a-z0-9]{0,48}[a-z0-9])?$ ]] || die "invalid --name '$name' (lowercase letters, digits, '-')"
  [[ "$port" =~ ^[0-9]+$ ]] || die "invalid --port '$port'"
  dir="$(realpath -m "$dir")"
  cluster_dir="$KWOK_WORKDIR/clusters/$name"
  admin_kubeconfig="$cluster_dir/kubeconfig.yaml"
  logs_dir="$cluster_dir/logs"
}

# Resolves the cached binaries. A missing one means the cache was never filled (or for another
# version), which `make binaries` fixes; we never fall back to a download or to whatever is on PATH.
resolve_binaries() {
  local bb="$root/hack/build-binaries.sh"
  kube_bin="$("$bb" --print-bindir kubernetes)"
  etcd_bin="$("$bb" --print-bindir etcd)"
  kwok_bin="$("$bb" --print-bindir kwok)"
  helm_bin="$("$bb" --print-bindir helm)"
  local missing=() f
  for f in "$kube_bin"/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl} "$etcd_bin/etcd" \
    "$kwok_bin"/{kwok,kwokctl}; do
    [ -x "$f" ] || missing+=("$f")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    printf '  missing: %s\n' "${missing[@]}" >&2
    die "binaries for Kubernetes $KUBE_VERSION / etcd $ETCD_VERSION / kwok $KWOK_VERSION are not built; run 'make binaries' (hack/build-binaries.sh) first"
  fi
  export_kwokctl_env
}

# kwokctl probes the apiserver with the first `kubectl` on PATH (downloading one if there is none),
# so our kubectl goes first on PATH as well as into KWOK_KUBECTL_BINARY.
export_kwokctl_env() {
  export PATH="$kube_bin:$PATH" KWOK_KUBECTL_BINARY="$kube_bin/kubectl"
  export KWOK_KUBE_VERSION="v$KUBE_VERSION" KWOK_ETCD_VERSION="$ETCD_VERSION"
  # kwokctl would take gates and runtime-config from these too; ours come from kube_settings only.
  unset KWOK_KUBE_FEATURE_GATES KWOK_KUBE_RUNTIME_CONFIG
}

kwokctl() { "$kwok_bin/kwokctl" --name "$name" "$@" 9>&-; }

# kubectl as the cluster admin, with a short request timeout so a hung apiserver cannot stall us.
kadmin() { "$kube_bin/kubectl" --kubeconfig "$admin_kubeconfig" --request-timeout=10s "$@" 9>&-; }

cluster_exists() { [ -f "$cluster_dir/kwok.yaml" ]; }

# One lock per cluster name, so two `up`s (or an `up` racing a `down`) cannot interleave. The lock
# fd (9) must not leak into kwokctl: the components it forks would hold the lock for their lifetime,
# so every command that may start a long-lived process closes it (9>&-).
lock_cluster() {
  mkdir -p "$KWOK_WORKDIR/locks"
  exec 9>"$KWOK_WORKDIR/locks/$name.lock"
  flock -w 600 9 || die "timed out waiting for another hack/cluster.sh on cluster '$name'"
}

# What each supported Kubernetes minor needs so that every DRA feature the driver publishes works:
# partitionable devices, device taints, consumable capacity, binding conditions (with
# DRAResourceClaimDeviceStatus, on by default in all four) and extended resources. The one place
# that knows; sets `kube_gates` and `kube_runtime_config`, or refuses the version.
# - 1.34, 1.35: the five gates are alpha (off); kwokctl passes --kube-feature-gates to the
#   apiserver, scheduler and controller-manager alike, which is what these gates need.
# - 1.34 only: with DRADeviceTaints on, the scheduler and controller-manager watch v1alpha3
#   DeviceTaintRules (not served by default) and never get ready, so the apiserver must serve it.
# - 1.36, 1.37: all five on by default (beta or GA); nothing to set.
# DRA_KWOK_FEATURE_GATES ("Gate=true,Other=false") is merged over these (a gate named there wins),
# and the runtime-config follows the result: DRADeviceTaints off on 1.34 needs no v1alpha3, and
# DRADeviceTaintRules on (off by default before 1.37) makes the apiserver serve the rules' version.
kube_settings() {
  local minor="${KUBE_VERSION#1.}"; minor="${minor%%.*}"
  [[ "$KUBE_VERSION" =~ ^1\.[0-9]+\.[0-9]+$ ]] || minor=""
  local alpha_dra="DRAPartitionableDevices=true,DRADeviceTaints=true,DRAConsumableCapacity=true,DRADeviceBindingConditions=true,DRAExtendedResource=true"
  local defaults="" taint_api="" rules_api=""
  case "$minor" in
    34) defaults="$alpha_dra"; taint_api="resource.k8s.io/v1alpha3=true" ;;
    35) defaults="$alpha_dra"; rules_api="resource.k8s.io/v1alpha3=true" ;;
    36) rules_api="resource.k8s.io/v1beta2=true" ;;
    37) ;;
    *) die "KUBE_VERSION=$KUBE_VERSION is not supported: this cluster supports Kubernetes 1.34 to 1.37 (e.g. KUBE_VERSION=1.34.4, 1.35.4, 1.36.3 or 1.37.2)" ;;
  esac
  kube_gates="$(merge_gates "$defaults" "${DRA_KWOK_FEATURE_GATES:-}")"
  kube_runtime_config=""
  if [ -n "$taint_api" ] && [ "$(gate_value DRADeviceTaints "$kube_gates")" != false ]; then kube_runtime_config="$taint_api"; fi
  if [ -n "$rules_api" ] && [ "$(gate_value DRADeviceTaintRules "$kube_gates")" = true ]; then kube_runtime_config="$rules_api"; fi
}

# Merges comma-separated Gate=value lists; a gate named again later replaces the earlier value
# (in its place), so the components never see one gate twice.
merge_gates() {
  local out=() item key value i found
  local IFS=,
  for item in $1 $2; do
    [ -n "$item" ] || continue
    [[ "${item,,}" =~ ^[a-z0-9]+=(true|false)$ ]] || die "invalid feature gate '$item' in DRA_KWOK_FEATURE_GATES (expected Gate=true or Gate=false)"
    key="${item%%=*}"; value="${item#*=}"; item="$key=${value,,}"; found=""
    for i in "${!out[@]}"; do
      if [ "${out[$i]%%=*}" = "$key" ]; then out[i]="$item"; found=1; fi
    done
    [ -n "$found" ] || out+=("$item")
  done
  echo "${out[*]}"
}

# The value a merged gate list gives GATE, or nothing if it does not name it.
gate_value() {
  local item IFS=,
  for item in $2; do [ "${item%%=*}" != "$1" ] || echo "${item#*=}"; done
}

# Options that have no kwokctl flag go through a KwokctlConfiguration document:
# - bindAddress: listen on loopback only, not on every interface (kwokctl's default is 0.0.0.0).
# - *Binary: kwokctl downloads these on demand (snapshots, `kwokctl etcdctl/kectl`); local paths make
#   such a command fail with "no such file" instead of reaching the network.
# - kwok-controller patches: the binary runtime always passes --manage-all-nodes=true and has no
#   selector option, so override it and add the annotation selector (a config patch rather than
#   --extra-args, whose index bookkeeping in v0.8.0 breaks with more than one component).
# - etcd patches: what 10,000 nodes with a slice each need, stated here rather than left to kwokctl's
#   defaults (which are the same in v0.8.0): an 8 GiB quota (the default 2 GiB would do for one
#   `make bench`, whose database peaked at a few hundred MB, but not for a long session of them
#   without compaction), compacted hourly. The apiserver needs nothing: its watch caches size
#   themselves, and its default in-flight limits (400 + 200) are far above the controller's 32.
write_kwokctl_config() {
  cat >"$1" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  bindAddress: 127.0.0.1
  kubectlBinary: $kube_bin/kubectl
  etcdctlBinary: $etcd_bin/etcdctl
  etcdutlBinary: $etcd_bin/etcdutl
  kectlBinary: $kwok_bin/kectl
componentsPatches:
- name: kwok-controller
  extraArgs:
  - key: manage-all-nodes
    value: "false"
    override: true
  - key: manage-nodes-with-annotation-selector
    value: $kwok_annotation
- name: etcd
  extraArgs:
  - key: quota-backend-bytes
    value: "8589934592"
    override: true
  - key: auto-compaction-retention
    value: "1"
    override: true
EOF
}

# A taken apiserver port makes kube-apiserver exit right away; say so before starting anything.
check_port_free() {
  [ "$port" = 0 ] && return 0
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is already in use (ss -ltnp 'sport = :$port' shows by whom); pick another --port or omit it"
  fi
}

create_cluster() {
  local cfg gates args
  cfg="$(mktemp "${TMPDIR:-/tmp}/dra-kwok-kwokctl.XXXXXX.yaml")"
  write_kwokctl_config "$cfg"
  gates="$kube_gates"
  args=(create cluster --runtime binary
    --kubeconfig= # empty: do not merge a context into ~/.kube/config; we write our own file
    --kube-apiserver-binary "$kube_bin/kube-apiserver"
    --kube-controller-manager-binary "$kube_bin/kube-controller-manager"
    --kube-scheduler-binary "$kube_bin/kube-scheduler"
    --kwok-controller-binary "$kwok_bin/kwok"
    --etcd-binary "$etcd_bin/etcd"
    --kube-authorization=true --kube-admission=true
    --kube-apiserver-port "$port"
    --wait 0s) # we do our own, stricter readiness check below
  [ -z "$gates" ] || args+=(--kube-feature-gates "$gates")
  [ -z "$kube_runtime_config" ] || args+=(--kube-runtime-config "$kube_runtime_config")
  log "creating cluster '$name' (Kubernetes $KUBE_VERSION${gates:+, gates $gates}${kube_runtime_config:+, runtime-config $kube_runtime_config}); logs: $logs_dir/"
  # kwokctl waits up to 2 minutes for the apiserver even when it has already exited, so run it in
  # the background and stop early when a component it started has died.
  local kwokctl_out="$KWOK_WORKDIR/create-$name.out" kpid rc=0 crashed
  # A simple command (not the kwokctl function), so that $! is kwokctl itself and can be killed.
  "$kwok_bin/kwokctl" --name "$name" -c "$cfg" "${args[@]}" >"$kwokctl_out" 2>&1 9>&- &
  kpid=$!
  while kill -0 "$kpid" 2>/dev/null; do
    crashed="$(crashed_components)"
    if [ -n "$crashed" ]; then
      kill "$kpid" 2>/dev/null || true; wait "$kpid" 2>/dev/null || true; rm -f "$cfg" "$kwokctl_out"
      fail "component(s) exited during startup: ${crashed//$'\n'/ }"
    fi
    sleep 0.5
  done
  wait "$kpid" || rc=$?
  rm -f "$cfg"
  if [ "$rc" != 0 ]; then
    cat "$kwokctl_out" >&2; rm -f "$kwokctl_out"
    fail "kwokctl create cluster failed (exit $rc)"
  fi
  rm -f "$kwokctl_out"
}

# The processes kwokctl runs for us, in start order; each has pids/NAME.pid and logs/NAME.log.
components="etcd kube-apiserver kube-controller-manager kube-scheduler kwok-controller"

# Prints the state of one component: running, exited, or not-started (no pid file yet). We look at
# the process ourselves rather than asking kwokctl, which takes a zombie for a running process:
# a dead component stays a zombie while kwokctl (its parent) runs, or for good where pid 1 does not
# reap orphans (as in some containers and VMs).
component_state() {
  local f="$cluster_dir/pids/$1.pid" state
  [ -f "$f" ] || { echo not-started; return; }
  state="$(ps -o stat= -p "$(cat "$f" 2>/dev/null || echo 0)" 2>/dev/null || true)"
  case "$state" in "" | Z*) echo exited ;; *) echo running ;; esac
}

component_status() { local c; for c in $components; do printf '%-24s %s\n' "$c" "$(component_state "$c")"; done; }

# Components that were started but whose process is gone (not-started ones are not counted, so
# this can run while kwokctl is still starting them).
crashed_components() { local c; for c in $components; do [ "$(component_state "$c")" != exited ] || echo "$c"; done; }

all_running() { local c; for c in $components; do [ "$(component_state "$c")" = running ] || return 1; done; }

apiserver_ready() { [ "$(kadmin get --raw /readyz 2>/dev/null)" = ok ]; }

# Healthy = every process runs, the apiserver is ready and serves resource.k8s.io/v1.
healthy() {
  cluster_exists || return 1
  all_running && apiserver_ready &&
    kadmin get --raw /apis/resource.k8s.io/v1 >/dev/null 2>&1
}

# Explains why a component died, from the usual suspects in its log.
diagnose() {
  local f="$logs_dir/$1.log"
  [ -f "$f" ] || return 0
  if grep -q 'address already in use' "$f"; then
    echo "  $1: a port it needs is taken: $(grep -o '[0-9.]*:[0-9]*: bind: address already in use' "$f" | head -1)"
  fi
}

# Copies the logs out of kwokctl's cluster dir (which `kwokctl delete` removes), prints where they
# are with the tail of each broken component's log, removes the half-started cluster and exits.
fail() {
  local reason="$1" saved="$DRA_KWOK_CACHE/logs/cluster-$name" c
  echo "cluster.sh: error: $reason" >&2
  if [ -d "$logs_dir" ]; then
    rm -rf "$saved"; mkdir -p "$saved"; cp -r "$logs_dir/." "$saved/"
    echo "component status:" >&2; component_status | sed 's/^/  /' >&2 || true
    local broken; broken="$(crashed_components)"
    for c in $broken; do
      diagnose "$c" >&2
      echo "---- last lines of $saved/$c.log ----" >&2; tail -n 15 "$saved/$c.log" >&2 || true
    done
    echo "component logs:" >&2
    for c in "$saved"/*.log; do echo "  $c" >&2; done
  fi
  if cluster_exists; then kwokctl delete cluster --kubeconfig "$(scratch_kubeconfig)" >/dev/null 2>&1 || true; fi
  exit 1
}

# kwokctl delete insists on a kubeconfig to remove its context from; hand it a throwaway one so it
# never edits ~/.kube/config or our own file.
scratch_kubeconfig() {
  local f="$KWOK_WORKDIR/scratch-kubeconfig"
  printf 'apiVersion: v1\nkind: Config\n' >"$f"; echo "$f"
}

# Waits until the cluster can do what the tests need: processes up, apiserver ready, the
# controller-manager and scheduler active (the default ServiceAccount exists and both hold their
# leader lease), and kwok-controller marks an annotated Node Ready.
wait_ready() {
  local deadline=$((SECONDS + timeout_s)) step="" broken
  until healthy && step="kcm" && kadmin -n default get serviceaccount default >/dev/null 2>&1 &&
    step="leases" && kadmin -n kube-system get lease kube-scheduler kube-controller-manager >/dev/null 2>&1; do
    broken="$(crashed_components)"
    if [ -n "$broken" ]; then fail "component(s) exited: ${broken//$'\n'/ }"; fi
    [ $SECONDS -lt $deadline ] || fail "cluster not ready after ${timeout_s}s (stuck at: ${step:-apiserver /readyz})"
    sleep 1; step=""
  done
  probe_kwok "$deadline"
}

probe_kwok() {
  local deadline="$1" node="dra-kwok-probe-$RANDOM"
  kadmin apply -f - >/dev/null <<EOF || fail "could not create probe node $node"
apiVersion: v1
kind: Node
metadata:
  name: $node
  annotations: {${kwok_annotation%%=*}: ${kwok_annotation#*=}}
  labels: {kubernetes.io/hostname: $node}
status:
  capacity: {cpu: "1", memory: 1Gi, pods: "1"}
  allocatable: {cpu: "1", memory: 1Gi, pods: "1"}
EOF
  until [ "$(kadmin get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; do
    [ $SECONDS -lt "$deadline" ] || fail "kwok-controller did not mark probe node $node Ready within ${timeout_s}s"
    sleep 0.5
  done
  kadmin delete node "$node" --wait=false >/dev/null
}

# Writes DIR/kubeconfig (self-contained: certs embedded) and DIR/bin with kubectl, helm, kwokctl.
publish() {
  mkdir -p "$dir"
  local tmp="$dir/.kubeconfig.tmp"
  (umask 077 && kwokctl get kubeconfig >"$tmp") || fail "kwokctl get kubeconfig failed"
  mv "$tmp" "$dir/kubeconfig"
  mkdir -p "$dir/bin"
  ln -sfn "$kube_bin/kubectl" "$dir/bin/kubectl"
  if [ -x "$helm_bin/helm" ]; then ln -sfn "$helm_bin/helm" "$dir/bin/helm"
  else log "warning: $helm_bin/helm is not built (make binaries); $dir/bin/helm not linked"; fi
  # A wrapper rather than a symlink: a bare kwokctl would look for clusters in ~/.kwok and for one
  # named "kwok"; the flags given by the caller still win, as the last --name counts.
  rm -f "$dir/bin/kwokctl"
  cat >"$dir/bin/kwokctl" <<EOF
#!/bin/sh
# Generated by hack/cluster.sh: kwokctl for cluster '$name' (state in $KWOK_WORKDIR).
KWOK_WORKDIR='$KWOK_WORKDIR' KWOK_KUBECTL_BINARY='$kube_bin/kubectl' PATH='$kube_bin':"\$PATH" exec '$kwok_bin/kwokctl' --name '$name' "\$@"
EOF
  chmod +x "$dir/bin/kwokctl"
}

print_usage_hint() {
  cat <<EOF
cluster '$name' is ready: Kubernetes $KUBE_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION ($(kadmin config view -o jsonpath='{.clusters[0].cluster.server}'))
  export KUBECONFIG=$dir/kubeconfig
  export PATH=$dir/bin:\$PATH
  kubectl get nodes    # KWOK manages Nodes annotated $kwok_annotation
component logs: $logs_dir/
stop it with: $(down_command)
EOF
}

down_command() {
  if [ "$name" = dra-kwok ] && [ "$dir" = "$root/.cluster" ]; then echo "make cluster-down"
  else echo "hack/cluster.sh down --name $name --dir $dir"; fi
}

# The cluster was made with other binaries (e.g. KUBE_VERSION changed): warn, as it keeps running
# the old ones until it is recreated.
warn_if_other_binaries() {
  grep -q "$kube_bin/kube-apiserver" "$cluster_dir/kwok.yaml" 2>/dev/null ||
    log "warning: cluster '$name' was created with other binaries than Kubernetes $KUBE_VERSION; run 'make cluster-down cluster' to recreate it"
}

cmd_up() {
  kube_settings # refuses an unsupported KUBE_VERSION before anything else
  resolve_binaries
  lock_cluster
  if cluster_exists; then
    warn_if_other_binaries
    if healthy; then
      log "cluster '$name' is already running and healthy"
      publish; print_usage_hint; return
    fi
    # Typically after a reboot: the state is there but the processes are gone.
    log "cluster '$name' exists but is not healthy; restarting its components"
    # kwokctl skips components whose pid file names a live (or zombie) process; drop the pid files
    # of dead ones so that it restarts them.
    local c
    for c in $(crashed_components); do rm -f "$cluster_dir/pids/$c.pid"; done
    kwokctl start cluster >/dev/null 2>&1 || fail "kwokctl start cluster failed"
  else
    check_port_free
    create_cluster
  fi
  wait_ready
  publish
  print_usage_hint
}

cmd_down() {
  resolve_binaries
  lock_cluster
  if cluster_exists; then
    log "deleting cluster '$name'"
    kwokctl delete cluster --kubeconfig "$(scratch_kubeconfig)" >/dev/null 2>&1 ||
      die "kwokctl delete cluster failed; run '$dir/bin/kwokctl delete cluster' to see why"
  else
    log "no cluster '$name'; nothing to delete"
  fi
  # Only remove what `up` wrote for this cluster, so a DIR shared with another cluster is kept.
  if grep -q "current-context: kwok-$name\$" "$dir/kubeconfig" 2>/dev/null; then
    rm -f "$dir/kubeconfig"
    rm -rf "${dir:?}/bin"
  fi
  rmdir "$dir" 2>/dev/null || true
}

cmd_status() {
  resolve_binaries
  cluster_exists || { echo "no cluster '$name'"; exit 1; }
  component_status
  if healthy; then echo "cluster '$name' is healthy"; else echo "cluster '$name' is NOT healthy (logs: $logs_dir/)"; exit 1; fi
}

# Test clusters are named dra-kwok-test-<pid>-<suffix> by tests/support/cluster.py; one whose pytest
# process is gone (killed before its teardown ran) would otherwise keep five processes running.
cmd_prune() {
  resolve_binaries
  local d n pid
  for d in "$KWOK_WORKDIR"/clusters/dra-kwok-test-*; do
    [ -d "$d" ] || continue
    n="$(basename "$d")"; pid="${n#dra-kwok-test-}"; pid="${pid%%-*}"
    if [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
      log "pruning test cluster '$n' (its test process $pid is gone)"
      name="$n" cluster_dir="$d"
      lock_cluster
      kwokctl delete cluster --kubeconfig "$(scratch_kubeconfig)" >/dev/null 2>&1 || log "warning: could not delete '$n'"
    fi
  done
  # Test cluster names are never reused, so their lock files can go once their process is gone.
  for d in "$KWOK_WORKDIR"/locks/dra-kwok-test-*.lock; do
    [ -f "$d" ] || continue
    n="$(basename "$d" .lock)"; pid="${n#dra-kwok-test-}"; pid="${pid%%-*}"
    if [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null && [ ! -d "$KWOK_WORKDIR/clusters/$n" ]; then rm -f "$d"; fi
  done
}

main() {
  parse_args "$@"
  case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    prune) cmd_prune ;;
    settings) kube_settings; echo "KUBE_VERSION=$KUBE_VERSION"; echo "feature-gates=$kube_gates"; echo "runtime-config=$kube_runtime_config" ;;
    *) log "unknown command '$cmd'"; usage ;;
  esac
}

main "$@"
