#!/usr/bin/env bash
# Builds the local cluster's binaries from the Go module proxy into a cache outside the repo,
# keyed by component and version. A component whose binaries are already cached is skipped, so
# with a warm cache this takes well under a second. Nothing is ever downloaded except Go modules.
# Usage: hack/build-binaries.sh [kubernetes|etcd|kwok|helm|karpenter ...]
#   (default: kubernetes etcd kwok helm; karpenter, Karpenter's KWOK provider for the slow e2e test,
#   is built only when named: `make karpenter`)
# Prints nothing but progress on stderr; `hack/build-binaries.sh --print-bindir COMPONENT` prints
# the directory holding COMPONENT's binaries, `--print-karpenter-module` Karpenter's pinned module
# directory and the Go toolchain it is built with (one per line).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$root/hack/versions.env"
# GOTOOLCHAIN: the local Go unless the caller names another (e.g. GOTOOLCHAIN=go1.27.3, which the
# go command fetches from the module proxy). Binaries are cached by component version only, so a
# cached build is reused whichever Go made it.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS=-mod=mod CGO_ENABLED=0

bindir() {
  case "$1" in
    kubernetes) echo "$DRA_KWOK_CACHE/bin/kubernetes-$KUBE_VERSION" ;;
    etcd) echo "$DRA_KWOK_CACHE/bin/etcd-$ETCD_VERSION" ;;
    kwok) echo "$DRA_KWOK_CACHE/bin/kwok-$KWOK_VERSION" ;;
    helm) echo "$DRA_KWOK_CACHE/bin/helm-$HELM_VERSION" ;;
    karpenter) echo "$DRA_KWOK_CACHE/bin/karpenter-$KARPENTER_VERSION" ;;
    *) echo "unknown component '$1' (expected kubernetes, etcd, kwok, helm or karpenter)" >&2; return 2 ;;
  esac
}
binaries() {
  case "$1" in
    kubernetes) echo "kube-apiserver kube-controller-manager kube-scheduler kubectl" ;;
    etcd) echo "etcd" ;;
    kwok) echo "kwok kwokctl" ;;
    helm) echo "helm" ;;
    karpenter) echo "karpenter-kwok" ;;
  esac
}

if [ "${1:-}" = "--print-bindir" ]; then bindir "${2:?component}"; exit; fi

# Karpenter's pinned module and the Go toolchain for it (see build_one below): the tests read the
# module's CRDs with the same Go.
karpenter_module() { echo "$root/tools/go/karpenter/v$KARPENTER_VERSION"; }
karpenter_toolchain() { if [ "$GOTOOLCHAIN" != local ]; then echo "$GOTOOLCHAIN"; else echo "$KARPENTER_GOTOOLCHAIN"; fi; }
if [ "${1:-}" = "--print-karpenter-module" ]; then karpenter_module; karpenter_toolchain; exit; fi

# True (and says so) when every binary of the component is in the cache.
cached() {
  local out b; out="$(bindir "$1")"
  for b in $(binaries "$1"); do [ -x "$out/$b" ] || return 1; done
  echo "cached: $1 ($out)" >&2
}

# Runs `go build` for the given packages from a module dir into a temporary dir, then moves the
# results into place, so an interrupted build never leaves a half-written cache entry.
build() {
  local comp="$1" moddir="$2" ldflags="$3"; shift 3
  local out; out="$(bindir "$comp")"
  if cached "$comp"; then return; fi
  echo "building $comp into $out (cold builds take minutes; logs: $DRA_KWOK_CACHE/logs/build-$comp.log)" >&2
  mkdir -p "$DRA_KWOK_CACHE/logs"
  local tmp; tmp="$(mktemp -d "$DRA_KWOK_CACHE/.build-$comp.XXXXXX")"
  local start=$SECONDS
  if ! (cd "$moddir" && go build -p 2 -trimpath -ldflags "-s -w $ldflags" -o "$tmp/" "$@") >"$DRA_KWOK_CACHE/logs/build-$comp.log" 2>&1; then
    echo "error: building $comp failed; see $DRA_KWOK_CACHE/logs/build-$comp.log" >&2
    tail -20 "$DRA_KWOK_CACHE/logs/build-$comp.log" >&2
    rm -rf "$tmp"; return 1
  fi
  if [ -n "${RENAME:-}" ] && [ -f "$tmp/${RENAME%%=*}" ]; then mv "$tmp/${RENAME%%=*}" "$tmp/${RENAME#*=}"; fi
  mkdir -p "$(dirname "$out")"; rm -rf "$out"; mv "$tmp" "$out"
  echo "built $comp in $((SECONDS - start))s" >&2
}

kube_module() {
  local committed="$root/tools/go/kubernetes"
  if grep -q "require k8s.io/kubernetes v$KUBE_VERSION\b" "$committed/go.mod"; then echo "$committed"; return; fi
  local gen="$DRA_KWOK_CACHE/modules/kubernetes-$KUBE_VERSION"
  [ -f "$gen/go.sum" ] || "$root/hack/gen-kube-module.sh" "$KUBE_VERSION" "$gen" >&2
  echo "$gen"
}

build_one() {
  case "$1" in
    kubernetes)
      # Before kube_module, which may generate a wrapper module (minutes of `go get`) for nothing.
      if cached kubernetes; then return; fi
      local minor="${KUBE_VERSION#*.}"; minor="${minor%%.*}"
      local v="v$KUBE_VERSION" ld=""
      for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.gitCommit=$v -X $p.buildDate=1970-01-01T00:00:00Z"
      done
      build kubernetes "$(kube_module)" "$ld" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl ;;
    etcd)
      # The etcd server's main package sits at its module root (go.etcd.io/etcd/server/v3), so
      # go build names the binary "server"; the build function renames it via RENAME.
      RENAME=server=etcd build etcd "$root/tools/go/etcd" "" go.etcd.io/etcd/server/v3 ;;
    kwok) build kwok "$root/tools/go/kwok" "" sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl ;;
    helm) build helm "$root/tools/go/helm" "-X helm.sh/helm/v4/internal/version.version=v$HELM_VERSION" helm.sh/helm/v4/cmd/helm ;;
    # Karpenter's KWOK provider: its main package is sigs.k8s.io/karpenter/kwok, so go build names
    # the binary "kwok", which would read as kwok-controller; RENAME makes it karpenter-kwok.
    # Each release has its own pinned module, tools/go/karpenter/v<version>. Its Go: the caller's
    # GOTOOLCHAIN when it names one, else KARPENTER_GOTOOLCHAIN (hack/versions.env: go1.27.3, as
    # v1.15.0 needs Go >= 1.26.9).
    karpenter)
      local mod gotc; mod="$(karpenter_module)"; gotc="$(karpenter_toolchain)"
      grep -qs "sigs.k8s.io/karpenter v$KARPENTER_VERSION\b" "$mod/go.mod" ||
        { echo "error: no pinned module for Karpenter $KARPENTER_VERSION: $mod/go.mod must require sigs.k8s.io/karpenter v$KARPENTER_VERSION (known: $(cd "$root/tools/go/karpenter" && echo v*))" >&2; return 1; }
      GOTOOLCHAIN="$gotc" RENAME=kwok=karpenter-kwok build karpenter "$mod" "" sigs.k8s.io/karpenter/kwok ;;
    *) bindir "$1" >/dev/null ;;
  esac
}

for c in "${@:-kubernetes etcd kwok helm}"; do for c2 in $c; do build_one "$c2"; done; done
