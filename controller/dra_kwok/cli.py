"""The `dra-kwok` command: `run` the controller, `render` what a node would get, `validate` files,
print the `crd`.

Every `run` flag also reads an environment variable (`DRA_KWOK_<FLAG>`), which is how the Helm
chart configures it. Parsing and checking the files of `validate` and `render` is the core's
(`core.documents`); here are the flags, reading files and stdin, and the words printed.

Exit codes: 0 success (warnings allowed); 1 the input has errors (validate, render), or the
cluster refused (cleanup); 2 a usage error or a file that cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from . import __version__
from .core.config import FallbackConfig
from .core.defaults import (
    DEFAULT_CONFIGMAP_KEY,
    DEFAULT_CONFIGMAP_NAME,
    DEFAULT_KWOK_LABELS,
    DEFAULT_MANAGED_BY,
    DEFAULT_NAMESPACE,
    KWOK_NODE_ANNOTATION,
)
from .core.documents import (
    NOT_A_NODE,
    NodeRender,
    check_document,
    check_stream,
    config_from_text,
    nodes_from_text,
    overlays_from_text,
    render_nodes,
)
from .core.issues import Issue, errors
from .core.overlay import OverlayRule
from .core.resolve import KwokNodeRule
from .core.versions import (
    DEFAULT_TARGET,
    NEWEST,
    RELEASES,
    SUPPORTED_MINORS,
    Target,
    VersionError,
    parse_gates,
    support_table_markdown,
)
from .core.versions import target as version_target
from .shell.settings import Settings


def _env(name: str, default: str) -> str:
    return os.environ.get(f"DRA_KWOK_{name}", default)


def _env_list(name: str) -> list[str] | None:
    """A comma-separated environment variable as a list; None when unset (the flag's default)."""
    value = os.environ.get(f"DRA_KWOK_{name}")
    return [x.strip() for x in value.split(",") if x.strip()] if value else None


# --- files -------------------------------------------------------------------------------------
# Files read: '-' is stdin; a directory stands for its .yaml, .yml and .json files, recursively.
YAML_SUFFIXES = (".yaml", ".yml", ".json")


class UsageError(Exception):
    """A problem with the command line or a file that cannot be read: exit code 2."""


def _expand(paths: Sequence[str]) -> list[str]:
    out: list[str] = []
    for path in paths:
        if path != "-" and Path(path).is_dir():
            files = sorted(str(f) for f in Path(path).rglob("*") if f.is_file() and f.suffix in YAML_SUFFIXES)
            if not files:
                raise UsageError(f"{path}: a directory without .yaml, .yml or .json files")
            out += files
        else:
            out.append(path)
    return out


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None


def _where(path: str, documents: int, index: int) -> str:
    """A document's place in its file: the path alone when the file holds just that one."""
    return path if documents == 1 and index == 0 else f"{path} (document {index + 1})"


def _print_issues(out: TextIO, where: str, issues: Sequence[Issue]) -> None:
    for issue in issues:
        out.write(f"{where}: {issue.severity.value}: {issue}\n")


# --- validate ----------------------------------------------------------------------------------
def _validate_doc(
    doc: Any, key: str, target: Target = DEFAULT_TARGET, node: yaml.Node | None = None, path: str = "-"
) -> tuple[str, list[Issue]]:
    """(a label for the document, its findings for `target`): `documents.check_document`, which
    tests/unit/test_docs.py runs on every example of the docs."""
    check = check_document(doc, key, target, node, path)
    return check.label, list(check.issues)


def _target(args: argparse.Namespace) -> Target | None:
    """The --kubernetes-version and --feature-gates of validate and render; None (after a message)
    when they cannot be used."""
    try:
        return version_target(args.kubernetes_version, parse_gates(args.feature_gates))
    except VersionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_validate(args: argparse.Namespace) -> int:
    target = _target(args)
    if target is None:
        return 2
    total_errors = 0
    for path in _expand(args.files):
        stream = check_stream(_read(path), path, args.key, target)
        for item in stream.items:
            where = _where(path, stream.documents, item.document)
            if item.item is not None:
                where += f" items[{item.item}]"
            if item.skipped is not None:
                if not args.quiet:
                    print(f"{where}: skipped {item.skipped} (not a dra-kwok document)")
                continue
            where += item.label
            _print_issues(sys.stdout, where, item.issues)
            total_errors += len(errors(item.issues))
            if item.ok and not args.quiet:
                print(f"{where}: ok" + (f" ({len(item.issues)} warning(s))" if item.issues else ""))
    if total_errors:
        print(f"{total_errors} error(s)", file=sys.stderr)
        return 1
    return 0


# --- render ------------------------------------------------------------------------------------
def _load_render_config(path: str, key: str, target: Target) -> FallbackConfig | None:
    source = config_from_text(_read(path), path, key, target)
    _print_issues(sys.stderr, path, source.issues)
    if source.ignored and source.config is not None:
        print(f"{path}: warning: only the first document is read as the configuration", file=sys.stderr)
    return source.config


def _load_render_overlays(paths: Sequence[str], target: Target) -> list[OverlayRule] | None:
    overlays: list[OverlayRule] = []
    failed = False
    for path in _expand(paths):
        source = overlays_from_text(_read(path), path, target)
        for doc in source.items:
            where = _where(path, source.documents, doc.document)
            if doc.skipped is not None:
                print(f"{where}: skipped {doc.skipped} (not a DRANodeOverlay)", file=sys.stderr)
                continue
            _print_issues(sys.stderr, where, doc.issues)
        failed |= source.failed
        overlays += source.rules
    return None if failed else overlays


def _load_nodes(path: str) -> list[Mapping[str, Any]] | None:
    """The Node manifests of a file: Nodes, or a List of them (`kubectl get nodes -o yaml`)."""
    source = nodes_from_text(_read(path), path)
    if source.issues:
        _print_issues(sys.stderr, path, source.issues)
        return None
    if source.not_a_node:
        print(f"{path}: {NOT_A_NODE}", file=sys.stderr)
        return None
    return list(source.nodes)


def _kwok_rule_text(rule: KwokNodeRule) -> str:
    """`annotation a, label k=v or k=v`: what marks a KWOK node."""
    return f"annotation {', '.join(rule.annotations)}, label {' or '.join(f'{k}={v}' for k, v in rule.labels)}"


def _print_node(node: NodeRender) -> None:
    """One summary line for the node on stderr (and why nothing matches, or the render's errors)."""
    name = node.name
    if not node.kwok:
        print(
            f"node {name}: not a KWOK node (no {_kwok_rule_text(KwokNodeRule())}): the driver publishes nothing for it",
            file=sys.stderr,
        )
    elif not node.matched:
        print(f"node {name}: no overlay or mapping matches: no slices", file=sys.stderr)
        for why in node.no_match:
            print(f"  {why.source} {why.name}: {why.reason}", file=sys.stderr)
        if not node.no_match:
            print("  (no overlays and no mappings were given: --overlay, --config)", file=sys.stderr)
    elif node.issues:
        _print_issues(sys.stderr, f"node {name}", node.issues)
    else:
        pools = [f"{p.driver}: {p.slices} slice(s), {p.devices} device(s), from {p.source}" for p in node.pools]
        print(f"node {name}: {'; '.join(pools)}", file=sys.stderr)
        for c in node.conflicts:
            print(
                f"  conflict: overlay {c.overlay} lost driver {c.driver} to {c.winner} at weight {c.weight}",
                file=sys.stderr,
            )


def cmd_render(args: argparse.Namespace) -> int:
    target = _target(args)
    if target is None:
        return 2
    config: FallbackConfig | None = FallbackConfig()
    if args.config:
        config = _load_render_config(args.config, args.key, target)
        if config is None:
            return 1
    overlays = _load_render_overlays(args.overlay or [], target)
    nodes = _load_nodes(args.node)
    if overlays is None or nodes is None or config is None:
        return 1
    manifests: list[dict[str, Any]] = []
    ok = True
    for node in render_nodes(nodes, overlays, config, target):
        _print_node(node)
        manifests += node.manifests
        ok &= node.ok
    if manifests:
        yaml.safe_dump_all(manifests, sys.stdout, sort_keys=False)
    return 0 if ok else 1


# --- run ---------------------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kopf logs every handled event at INFO: thousands of lines a second at scale.
    for noisy in ("kopf.objects", "kopf.activities", "kopf._core", "kopf._cogs", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _parse_label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def _flags_else_env(given: list[Any] | None, env: str) -> list[str] | None:
    """A repeatable flag's values if any were given, else its environment variable's list: the
    flags replace the environment (argparse would append them to an env-derived default)."""
    return [str(v) for v in given] if given is not None else _env_list(env)


def settings_from_args(args: argparse.Namespace) -> Settings:
    given_annotations = _flags_else_env(args.kwok_annotation, "KWOK_ANNOTATIONS")
    annotations = tuple(given_annotations) if given_annotations is not None else (KWOK_NODE_ANNOTATION,)
    if args.kwok_label is not None:
        labels = tuple(args.kwok_label)
    elif (env_labels := _env_list("KWOK_LABELS")) is not None:
        try:
            labels = tuple(_parse_label(x) for x in env_labels)
        except argparse.ArgumentTypeError as exc:
            raise SystemExit(f"dra-kwok: DRA_KWOK_KWOK_LABELS: {exc}") from None
    else:
        labels = DEFAULT_KWOK_LABELS
    drivers = _flags_else_env(args.driver, "DRIVERS") or []
    return Settings(
        kubeconfig=args.kubeconfig or None,
        configmap_name=args.configmap_name,
        configmap_namespace=args.namespace,
        configmap_key=args.key,
        kwok_nodes=KwokNodeRule(annotations, labels),
        managed_by=args.managed_by,
        field_manager=args.field_manager or args.managed_by,
        owned_drivers=frozenset(d for d in drivers if d),
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        bind_address=args.bind_address,
        log_format=args.log_format,
        log_level=args.log_level,
        concurrency=args.concurrency,
        workers=args.workers,
        resync_seconds=args.resync_seconds,
        node_watch_pace=args.node_watch_pace,
        unready_after=args.unready_after,
        kubernetes_version=args.kubernetes_version or None,
        feature_gates=args.feature_gates,
        simulate_claims=args.simulate_claims,
        karpenter_node_overlays=args.karpenter_node_overlays,
        leader_elect=args.leader_elect,
        leader_election_namespace=args.leader_election_namespace,
        leader_election_id=args.leader_election_id,
        leader_identity=args.leader_election_identity,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
    )


def _add_target_arguments(parser: argparse.ArgumentParser, learned: bool) -> None:
    """--kubernetes-version and --feature-gates: what the templates are checked and laid out for."""
    supported = ", ".join(f"1.{m}" for m in SUPPORTED_MINORS)
    if learned:
        parser.add_argument(
            "--kubernetes-version",
            default=_env("KUBERNETES_VERSION", ""),
            help=f"publish for this version ({supported}) instead of the apiserver's own, learned at startup "
            "from /version and dry-run probes of which DRA fields it keeps (default: learned)",
        )
    else:
        parser.add_argument(
            "--kubernetes-version",
            default=RELEASES[NEWEST],
            metavar="VERSION",
            help=f"check for this Kubernetes version ({supported}; default: {RELEASES[NEWEST]}, the newest "
            "supported): its limits, where shared counters go, and which DRA fields it keeps",
        )
    parser.add_argument(
        "--feature-gates",
        default=_env("FEATURE_GATES", "") if learned else "",
        metavar="GATES",
        help="DRA feature gates switched from the version's defaults, as the control plane has them "
        "(e.g. DRADeviceTaints=true,DRADeviceBindingConditions=true; default: none, the version's defaults"
        + (" as the apiserver's answers show)" if learned else ")"),
    )


def _port(text: str) -> int | None:
    """A listening port: 'auto' is any free one (0 to the OS), '0' none at all (None)."""
    if text == "auto":
        return 0
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give 1-65535, 0 (disabled) or 'auto'") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give 1-65535, 0 (disabled) or 'auto'")
    return port or None


def _pace(text: str) -> float:
    """--node-watch-pace: seconds, 0 or more (a finite number)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a pace: give seconds, 0 or more (e.g. 0.2; 0 for none)")
    return seconds


def cmd_run(args: argparse.Namespace) -> int:
    from .shell.controller import run

    settings = settings_from_args(args)
    configure_logging(settings.log_format, settings.log_level)
    import uvloop  # its event loop and TLS reads cost ~15% less CPU per watch event than asyncio's

    uvloop.run(run(settings))
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Delete every slice carrying our managed-by label (the chart's post-delete hook runs this)."""
    from .shell.api import ApiError
    from .shell.cleanup import delete_managed_slices

    configure_logging(args.log_format, "INFO")
    try:
        deleted = asyncio.run(delete_managed_slices(args.kubeconfig or None, args.managed_by))
    except ApiError as exc:
        print(f"dra-kwok cleanup: {exc}", file=sys.stderr)
        return 1
    print(f"deleted {deleted} ResourceSlice(s) labelled managed-by={args.managed_by}")
    return 0


def cmd_fault(args: argparse.Namespace) -> int:
    """Read or change the faults annotation of a node (see docs/simulation.md)."""
    from kubernetes.aio.config import ConfigException

    from .core.fault_annotation import parse_entry, parse_faults
    from .shell.api import ApiError, NotFound
    from .shell.fault_request import change_faults, current_faults

    additions = []
    for text in args.faults:
        fault, problem = parse_entry(text)
        if problem or fault is None:
            raise UsageError(problem or text)
        additions.append(fault)
    if args.list == bool(additions or args.recover or args.recover_all):
        if not args.list:
            raise UsageError("name faults (DEVICE=EFFECT), --recover DEVICE..., --recover-all or --list")
        raise UsageError("--list reads only: give it without faults or --recover")
    if args.recover_all and (additions or args.recover):
        raise UsageError("--recover-all removes every fault: give it without faults or --recover")
    kubeconfig = args.kubeconfig or None
    try:
        if args.list:
            entries, problems = parse_faults(asyncio.run(current_faults(kubeconfig, args.node)))
            for problem in problems:
                print(f"dra-kwok fault: node {args.node}: bad entry: {problem}", file=sys.stderr)
            print("\n".join(e.text() for e in entries) or "(no faults)")
            return 0
        value, patch, problems = asyncio.run(
            change_faults(kubeconfig, args.node, additions, args.recover, args.recover_all, args.dry_run)
        )
    except ConfigException as exc:
        print(
            f"dra-kwok fault: no usable kubeconfig ({exc}): give --kubeconfig PATH or set $KUBECONFIG",
            file=sys.stderr,
        )
        return 2
    except NotFound:
        print(f"dra-kwok fault: node {args.node!r} not found: check the name with `kubectl get nodes`", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"dra-kwok fault: node {args.node}: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"dra-kwok fault: dropped a bad entry: {problem}", file=sys.stderr)
    print(json.dumps(patch) if args.dry_run else value or "(no faults)")
    return 0


def cmd_crd(args: argparse.Namespace) -> int:
    from .crd import render_crd_yaml

    sys.stdout.write(render_crd_yaml())
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    sys.stdout.write(support_table_markdown())
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    from .core.profiles import catalog

    try:
        if args.device_classes:
            if not args.names:
                raise UsageError("--device-classes needs profile names; known profiles: " + catalog.known_profiles())
            sys.stdout.write(catalog.device_classes_yaml(args.names))
        elif len(args.names) > 1:
            raise UsageError("give one profile name (or --device-classes NAME...)")
        elif args.names:
            sys.stdout.write(catalog.profile_details(args.names[0]))
        else:
            sys.stdout.write(catalog.profiles_table())
    except catalog.UnknownProfile as exc:
        raise UsageError(str(exc)) from None
    return 0


# --- parser ------------------------------------------------------------------------------------
EXIT_CODES = (
    "exit codes: 0 success (warnings allowed); 1 the input has errors (validate, render) or the cluster "
    "refused (cleanup); 2 a usage error or a file that cannot be read"
)


def _version() -> str:
    try:
        return importlib.metadata.version("dra-kwok-driver")
    except importlib.metadata.PackageNotFoundError:
        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dra-kwok",
        description="A DRA driver for KWOK nodes: publishes the ResourceSlices each fake node's instance type "
        "would have, from DRANodeOverlays and a ConfigMap of mappings. Check files with `validate`, preview a "
        "node with `render`.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"dra-kwok {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the controller",
        epilog=EXIT_CODES,
        description="Run the controller. Every flag --some-name can also be set by the environment "
        "variable DRA_KWOK_SOME_NAME (the chart sets them); --key is DRA_KWOK_CONFIGMAP_KEY, and the "
        "repeatable --kwok-annotation, --kwok-label and --driver are DRA_KWOK_KWOK_ANNOTATIONS, "
        "DRA_KWOK_KWOK_LABELS and DRA_KWOK_DRIVERS, comma-separated. A flag on the command line wins; "
        "repeated flags replace the variable's list.",
    )
    run.add_argument(
        "--kubeconfig",
        default=_env("KUBECONFIG", os.environ.get("KUBECONFIG", "")),
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)",
    )
    run.add_argument(
        "--configmap-name",
        default=_env("CONFIGMAP_NAME", DEFAULT_CONFIGMAP_NAME),
        help=f"the ConfigMap of fallback mappings (default: {DEFAULT_CONFIGMAP_NAME})",
    )
    run.add_argument(
        "--namespace",
        default=_env("NAMESPACE", DEFAULT_NAMESPACE),
        help=f"the ConfigMap's namespace (default: {DEFAULT_NAMESPACE})",
    )
    run.add_argument(
        "--key",
        default=_env("CONFIGMAP_KEY", DEFAULT_CONFIGMAP_KEY),
        help=f"the ConfigMap key holding config.yaml (default: {DEFAULT_CONFIGMAP_KEY})",
    )
    run.add_argument(
        "--kwok-annotation",
        action="append",
        metavar="KEY",
        help="an annotation that marks KWOK nodes (repeatable; env DRA_KWOK_KWOK_ANNOTATIONS, comma-separated; "
        f"default {KWOK_NODE_ANNOTATION})",
    )
    run.add_argument(
        "--kwok-label",
        action="append",
        type=_parse_label,
        metavar="KEY=VALUE",
        help="a label that marks KWOK nodes (repeatable; env DRA_KWOK_KWOK_LABELS, comma-separated; "
        f"default {', '.join(f'{k}={v}' for k, v in DEFAULT_KWOK_LABELS)})",
    )
    run.add_argument(
        "--managed-by",
        default=_env("MANAGED_BY", DEFAULT_MANAGED_BY),
        help=f"value of the managed-by label on our slices, one per installation (default: {DEFAULT_MANAGED_BY})",
    )
    run.add_argument(
        "--field-manager",
        default=_env("FIELD_MANAGER", ""),
        help="server-side apply field manager (default: the --managed-by value, so that two "
        "installations conflict instead of silently taking slices from each other)",
    )
    run.add_argument(
        "--driver",
        action="append",
        help="no longer needed, accepted and ignored: every slice with this installation's managed-by "
        "label is its own, whatever driver it names (repeatable; env DRA_KWOK_DRIVERS, comma-separated; "
        "default: none)",
    )
    run.add_argument(
        "--metrics-port",
        type=_port,
        default=_port(_env("METRICS_PORT", "8080")),
        help="port of /metrics; 0 disables it, 'auto' takes any free port and logs it (default 8080)",
    )
    run.add_argument(
        "--health-port",
        type=_port,
        default=_port(_env("HEALTH_PORT", "8081")),
        help="port of /healthz and /readyz; 0 disables them, 'auto' takes any free port and logs it (default 8081)",
    )
    run.add_argument(
        "--unready-after",
        type=float,
        default=float(_env("UNREADY_AFTER", "30")),
        help="seconds without any answer from the apiserver before /readyz fails (default 30); a 401 or 403 "
        "makes it fail at once",
    )
    run.add_argument(
        "--bind-address",
        default=_env("BIND_ADDRESS", "0.0.0.0"),
        help="address the metrics and health ports listen on (default: 0.0.0.0)",
    )
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=_env("LOG_FORMAT", "text"),
        help="text lines, or one JSON object per line (default: text)",
    )
    run.add_argument(
        "--log-level",
        default=_env("LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (default: INFO)",
    )
    run.add_argument(
        "--concurrency",
        type=int,
        default=int(_env("CONCURRENCY", "32")),
        help="API requests in flight at most (default: 32)",
    )
    run.add_argument(
        "--workers", type=int, default=int(_env("WORKERS", "32")), help="nodes reconciled at once (default: 32)"
    )
    run.add_argument(
        "--node-watch-pace",
        type=_pace,
        default=_env("NODE_WATCH_PACE", "0.2"),  # a string, so argparse checks it by `type` too
        help="seconds the node watch is left unread after a read that changed nothing, e.g. status heartbeats "
        "(default: 0.2): node events that come meanwhile are read and decoded together, which at thousands of "
        "heartbeating nodes costs a fraction of reading each alone; after a read that changed a node, or a "
        "large one, the next follows at once. A node change waits at most this long. 0 reads each event as "
        "it comes",
    )
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=float(_env("RESYNC_SECONDS", "300")),
        help="seconds between safety-net full resyncs, which cost no API request (default: 300)",
    )
    run.add_argument(
        "--simulate-claims",
        action="store_true",
        default=_env("SIMULATE_CLAIMS", "").strip().lower() in ("1", "true", "yes"),
        help="watch ResourceClaims and write status.devices and binding conditions for devices of sources "
        "with simulation.claimStatus or simulation.binding (env DRA_KWOK_SIMULATE_CLAIMS=true; needs RBAC for "
        "resourceclaims/status and, from 1.36, resourceclaims/driver: the chart's simulation.claims.enabled; "
        "default: off)",
    )
    run.add_argument(
        "--karpenter-node-overlays",
        action="store_true",
        default=_env("KARPENTER_NODE_OVERLAYS", "").strip().lower() in ("1", "true", "yes"),
        help="keep a Karpenter NodeOverlay (karpenter.sh/v1alpha1) per DRANodeOverlay whose capacity is the "
        "extended resources DeviceClasses name for its devices, so Karpenter plans pods that request them "
        "(env DRA_KWOK_KARPENTER_NODE_OVERLAYS=true; needs RBAC for nodeoverlays and deviceclasses: the "
        "chart's karpenter.nodeOverlays.enabled; default: off)",
    )
    run.add_argument(
        "--leader-elect",
        action="store_true",
        default=_env("LEADER_ELECT", "").strip().lower() in ("1", "true", "yes"),
        help="run as one of several replicas: the holder of a coordination.k8s.io Lease writes, the others watch "
        "and stand by (env DRA_KWOK_LEADER_ELECT=true; needs RBAC for leases: the chart sets it; default: off, "
        "a single writer)",
    )
    run.add_argument(
        "--leader-election-namespace",
        default=_env("LEADER_ELECTION_NAMESPACE", ""),
        help="namespace of the Lease (default: the ConfigMap's, --namespace)",
    )
    run.add_argument(
        "--leader-election-id",
        default=_env("LEADER_ELECTION_ID", ""),
        help="name of the Lease (default: the --managed-by value; replicas of one installation share it)",
    )
    run.add_argument(
        "--leader-election-identity",
        default=_env("LEADER_ELECTION_IDENTITY", ""),
        help="this replica's name in the Lease (default: <hostname>_<pid>; the chart gives the Pod's name)",
    )
    for flag, default, what in (
        ("--lease-duration", 15.0, "how long a standby waits, after the Lease last changed, before taking it"),
        ("--renew-deadline", 10.0, "how long the leader keeps writing without renewing the Lease"),
        ("--retry-period", 2.0, "seconds between renewals and between a standby's attempts"),
    ):
        run.add_argument(
            flag,
            type=float,
            default=float(_env(flag[2:].upper().replace("-", "_"), str(default))),
            help=f"{what} (seconds, default {default:g}; retry period < renew deadline < lease duration)",
        )
    _add_target_arguments(run, learned=True)
    run.set_defaults(func=cmd_run)

    render_p = sub.add_parser(
        "render",
        help="print the ResourceSlices a node would get",
        description="Print the ResourceSlices the driver would publish for each node (YAML on stdout) and one "
        "summary line per node on stderr: which overlay or mapping applies, or why none does (the first "
        "requirement or selector each one fails). Nodes may be one manifest, several, or a List "
        "(`kubectl get nodes -o yaml`).",
        epilog=EXIT_CODES,
    )
    render_p.add_argument(
        "--config", metavar="FILE", help="a ConfigMap manifest or a bare config.yaml (default: no mappings)"
    )
    render_p.add_argument(
        "--key",
        default=DEFAULT_CONFIGMAP_KEY,
        help=f"the ConfigMap key holding config.yaml (default: {DEFAULT_CONFIGMAP_KEY})",
    )
    render_p.add_argument(
        "--overlay",
        action="append",
        metavar="PATH",
        help="a DRANodeOverlay manifest, or a directory of them, searched recursively (repeatable; default: none)",
    )
    render_p.add_argument(
        "--node", required=True, metavar="FILE", help="Node manifests, or a List of them ('-' for stdin)"
    )
    _add_target_arguments(render_p, learned=False)
    render_p.set_defaults(func=cmd_render)

    validate = sub.add_parser(
        "validate",
        help="check ConfigMaps, config.yaml files, DRANodeOverlays and chart values",
        description="Check files before applying them: ConfigMap manifests, bare config.yaml files, "
        "DRANodeOverlay manifests and Helm values files (their `config:`), in multi-document files and Lists. "
        "Every error and warning is printed with the file, the document, the field and the fix; other kinds "
        "are skipped. Keys written twice are errors, with their lines in the file.",
        epilog=EXIT_CODES,
    )
    validate.add_argument(
        "files", nargs="+", metavar="PATH", help="files or directories (searched recursively); '-' for stdin"
    )
    validate.add_argument(
        "--key",
        default=DEFAULT_CONFIGMAP_KEY,
        help=f"the ConfigMap key holding config.yaml (default: {DEFAULT_CONFIGMAP_KEY})",
    )
    validate.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    _add_target_arguments(validate, learned=False)
    validate.set_defaults(func=cmd_validate)

    cleanup = sub.add_parser(
        "cleanup",
        help="delete all slices this installation manages (used on uninstall)",
        description="Delete every ResourceSlice labelled managed-by=<--managed-by>, whatever its driver: what "
        "the chart's post-delete hook runs. Other installations' slices are left alone.",
        epilog=EXIT_CODES,
    )
    cleanup.add_argument(
        "--kubeconfig",
        default=_env("KUBECONFIG", os.environ.get("KUBECONFIG", "")),
        help="kubeconfig file (default: $DRA_KWOK_KUBECONFIG, $KUBECONFIG, ~/.kube/config, or in-cluster)",
    )
    cleanup.add_argument(
        "--managed-by",
        default=_env("MANAGED_BY", DEFAULT_MANAGED_BY),
        help=f"the installation's managed-by label value (default: $DRA_KWOK_MANAGED_BY or {DEFAULT_MANAGED_BY})",
    )
    cleanup.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=_env("LOG_FORMAT", "text"),
        help="text lines, or one JSON object per line (default: text)",
    )
    cleanup.set_defaults(func=cmd_cleanup)

    fault = sub.add_parser(
        "fault",
        help="fail devices of a KWOK node on demand (and recover them)",
        description="Fail devices of a KWOK node: writes the node's annotation "
        "dra-kwok.test.karpenter.sh/faults, which the controller reads (it writes nothing onto Nodes) to taint "
        "the device in its slice (NoSchedule: no new claims; NoExecute: kube-controller-manager evicts the pods "
        "using it) or leave it out (Remove). Entries are DEVICE=EFFECT or DRIVER/DEVICE=EFFECT; each is stamped "
        "with the time it began (the taint's timeAdded).",
        epilog="examples:\n  dra-kwok fault kwok-node-1 gpu-0=NoExecute\n  dra-kwok fault kwok-node-1 --recover gpu-0\n"
        "  dra-kwok fault kwok-node-1 --list\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fault.add_argument("node", help="the KWOK node")
    fault.add_argument("faults", nargs="*", metavar="DEVICE=EFFECT", help="NoSchedule, NoExecute or Remove")
    fault.add_argument(
        "--recover", nargs="+", metavar="DEVICE", default=[], help="remove these devices' faults (default: none)"
    )
    fault.add_argument("--recover-all", action="store_true", help="remove the annotation")
    fault.add_argument("--list", action="store_true", help="print the node's faults")
    fault.add_argument("--dry-run", action="store_true", help="print the patch instead of sending it")
    fault.add_argument(
        "--kubeconfig",
        default=_env("KUBECONFIG", os.environ.get("KUBECONFIG", "")),
        help="kubeconfig file (default: $DRA_KWOK_KUBECONFIG, $KUBECONFIG, ~/.kube/config, or in-cluster)",
    )
    fault.set_defaults(func=cmd_fault)

    crd = sub.add_parser(
        "crd",
        help="print the DRANodeOverlay CustomResourceDefinition",
        description="Print the DRANodeOverlay CustomResourceDefinition (the one in crds/ and the chart), for "
        "`dra-kwok crd | kubectl apply --server-side -f -`.",
        epilog=EXIT_CODES,
    )
    crd.set_defaults(func=cmd_crd)

    versions_p = sub.add_parser(
        "versions",
        help="print which DRA features each supported Kubernetes version takes",
        description="Print the support table (feature by Kubernetes minor: works, needs a feature gate, or not "
        "available) as Markdown: the table of docs/versions.md, from the data `validate` and the controller use.",
        epilog=EXIT_CODES,
    )
    versions_p.set_defaults(func=cmd_versions)

    profiles_p = sub.add_parser(
        "profiles",
        help="list the device profiles of real DRA drivers, show one, print their DeviceClasses",
        description="Without arguments, list the device profiles (templates write `profile: {name: ..., "
        "parameters: ...}` to get a real driver's devices): name, driver, summary. With a NAME, show that "
        "profile's parameters (type, default, constraints), its source and an example template. With "
        "--device-classes NAME..., print the DeviceClasses the real drivers' charts install for those "
        "profiles, for `dra-kwok profiles --device-classes NAME | kubectl apply -f -` (the chart installs "
        "them with `deviceClasses: [{profile: NAME}]`).",
        epilog=EXIT_CODES,
    )
    profiles_p.add_argument("names", nargs="*", metavar="NAME", help="a profile (several with --device-classes)")
    profiles_p.add_argument(
        "--device-classes",
        action="store_true",
        help="print the DeviceClass manifests of the NAMEd profiles as a YAML stream",
    )
    profiles_p.set_defaults(func=cmd_profiles)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except UsageError as exc:
        print(f"dra-kwok {args.command}: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"dra-kwok: {exc.filename}: no such file", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `dra-kwok render ... | head`
        sys.stderr.close()
        return 0
    return result


if __name__ == "__main__":
    sys.exit(main())
