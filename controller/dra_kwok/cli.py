"""The `dra-kwok` command: `run` the controller, `render` what a node would get, `validate` files,
print the `crd`.

Every `run` flag also reads an environment variable (`DRA_KWOK_<FLAG>`), which is how the Helm
chart configures it.

Exit codes: 0 success (warnings allowed); 1 the input has errors (validate, render), or the
cluster refused (cleanup); 2 a usage error or a file that cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from . import __version__
from .core.config import (
    FallbackConfig,
    YamlDocument,
    config_text_from_configmap,
    embedded_first_line,
    load_config_data,
    parse_yaml,
    parse_yaml_documents,
)
from .core.defaults import (
    DEFAULT_CONFIGMAP_KEY,
    DEFAULT_CONFIGMAP_NAME,
    DEFAULT_KWOK_LABELS,
    DEFAULT_MANAGED_BY,
    DEFAULT_NAMESPACE,
    KWOK_NODE_ANNOTATION,
)
from .core.issues import Issue, errors
from .core.models import OVERLAY_GROUP, OVERLAY_KIND, OVERLAY_VERSION
from .core.overlay import OverlayRule, load_overlay
from .core.plan import plan_node
from .core.render import NodeRef, RenderError, render
from .core.resolve import KwokNodeRule, order_overlays, resolve
from .core.selectors import first_failing_requirement, first_failing_selector_term
from .core.validation import extended_resource_issues
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


# --- documents ---------------------------------------------------------------------------------
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


def _documents(path: str) -> list[YamlDocument]:
    """The YAML documents of a file, with parse errors and duplicate keys (file lines) as Issues;
    an input without any document is an error, not "nothing wrong"."""
    docs = parse_yaml_documents(_read(path), "stdin" if path == "-" else path)
    if not docs:
        what = "stdin is empty" if path == "-" else "the file holds no YAML document"
        fix = "check the command that feeds the pipe" if path == "-" else "add the manifest, or leave the file out"
        return [YamlDocument(0, None, None, (Issue((), what, fix=fix),))]
    return docs


def _child(node: yaml.Node | None, *keys: str | int) -> yaml.Node | None:
    """The node at `keys` under `node` (mapping keys, sequence indices), for line numbers."""
    for key in keys:
        if isinstance(node, yaml.MappingNode) and isinstance(key, str):
            node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return None
    return node


def _kind_of(doc: Any) -> str:
    if isinstance(doc, Mapping):
        kind = doc.get("kind")
        if kind in ("ConfigMap", OVERLAY_KIND, "List", "NodeOverlay", "Node", "DeviceClass"):
            return str(kind)
        if kind:
            return "other"
        if "mappings" in doc or "driver" in doc:
            return "config"
        if isinstance(doc.get("config"), Mapping):
            return "values"  # the Helm chart's values: `config` holds config.yaml
    return "unknown"


OVERLAY_API_VERSION = f"{OVERLAY_GROUP}/{OVERLAY_VERSION}"


def _not_a_dranodeoverlay(doc: Mapping[str, Any]) -> list[Issue]:
    """Karpenter's NodeOverlay, or a DRANodeOverlay of another group: say what to write instead."""
    if doc.get("kind") == "NodeOverlay":
        return [
            Issue(
                ("kind",),
                f"is Karpenter's NodeOverlay ({doc.get('apiVersion')}), which dra-kwok does not read: it has "
                "no ResourceSlice templates",
                "NodeOverlay",
                f"write a DRANodeOverlay (apiVersion: {OVERLAY_API_VERSION}, kind: {OVERLAY_KIND}) with the same "
                "requirements and weight, and the devices in spec.resourceSlices (docs/overlays.md)",
            )
        ]
    if doc.get("apiVersion") != OVERLAY_API_VERSION:
        return [
            Issue(
                ("apiVersion",),
                f"a {OVERLAY_KIND} is {OVERLAY_API_VERSION}",
                doc.get("apiVersion"),
                f"set apiVersion: {OVERLAY_API_VERSION}",
            )
        ]
    return []


def _load_config_doc(
    doc: Any, key: str, node: yaml.Node | None, path: str, target: Target
) -> tuple[FallbackConfig | None, list[Issue]]:
    """A ConfigMap's or a bare config.yaml's configuration; lines inside a ConfigMap's embedded
    config.yaml are counted in the file when it is a block scalar (`config.yaml: |`)."""
    if _kind_of(doc) == "ConfigMap":
        text, issues = config_text_from_configmap(doc, key)
        if text is None:
            return None, issues
        first_line = embedded_first_line(node, "data", key)
        what = path if first_line else f"data[{key!r}] (lines counted in that text)"
        data, issues = parse_yaml(text, what, first_line or 1)
        if issues:
            return None, [i.under(("data", key)) for i in issues]
        cfg, issues = load_config_data(data, target)
        return cfg, [i.under(("data", key)) for i in issues]
    return load_config_data(doc, target)


def _print_issues(out: TextIO, where: str, issues: Sequence[Issue]) -> None:
    for issue in issues:
        out.write(f"{where}: {issue.severity.value}: {issue}\n")


# --- validate ----------------------------------------------------------------------------------
def _validate_doc(
    doc: Any, key: str, target: Target = DEFAULT_TARGET, node: yaml.Node | None = None, path: str = "-"
) -> tuple[str, list[Issue]]:
    """(a label for the document, its findings for `target`); `node` and `path` give file lines
    to an embedded config.yaml."""
    kind = _kind_of(doc)
    name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc, Mapping) else "?"
    if kind in (OVERLAY_KIND, "NodeOverlay"):
        wrong = _not_a_dranodeoverlay(doc)
        return f" {kind}/{name}", wrong or load_overlay(doc, target)[1]
    if kind == "ConfigMap":
        return f" ConfigMap/{name}", _load_config_doc(doc, key, node, path, target)[1]
    if kind == "config":
        return "", _load_config_doc(doc, key, node, path, target)[1]
    if kind == "DeviceClass":
        spec = doc.get("spec")
        named = isinstance(spec, Mapping) and bool(spec.get("extendedResourceName"))
        return f" DeviceClass/{name}", extended_resource_issues(
            ("spec", "extendedResourceName"), target
        ) if named else []
    if kind == "values":
        issues = [i.under(("config",)) for i in load_config_data(doc["config"], target)[1]]
        classes = doc.get("deviceClasses")
        for i, dc in enumerate(classes if isinstance(classes, list) else []):
            if isinstance(dc, Mapping) and dc.get("extendedResourceName"):
                issues += extended_resource_issues(("deviceClasses", i, "extendedResourceName"), target)
        return " (Helm values)", issues
    got = doc.get("kind") if isinstance(doc, Mapping) else type(doc).__name__
    return "", [
        Issue(
            (),
            "not a ConfigMap, a DRANodeOverlay, a config.yaml or chart values document",
            got,
            "check the file; a bare config.yaml needs 'driver' or 'mappings'",
        )
    ]


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
        docs = _documents(path)
        for doc in docs:
            where = path if len(docs) == 1 and doc.index == 0 else f"{path} (document {doc.index + 1})"
            if doc.issues:
                _print_issues(sys.stdout, where, doc.issues)
                total_errors += len(errors(doc.issues))
                continue
            is_list = _kind_of(doc.data) == "List"
            items = doc.data.get("items") or [] if is_list else [doc.data]
            for j, item in enumerate(items):
                item_where = f"{where} items[{j}]" if is_list else where
                node = _child(doc.node, "items", j) if is_list else doc.node
                if _kind_of(item) in ("other", "Node"):
                    if not args.quiet:
                        print(f"{item_where}: skipped {item.get('kind')} (not a dra-kwok document)")
                    continue
                label, issues = _validate_doc(item, args.key, target, node, path)
                item_where += label
                _print_issues(sys.stdout, item_where, issues)
                n = len(errors(issues))
                total_errors += n
                if not n and not args.quiet:
                    print(f"{item_where}: ok" + (f" ({len(issues)} warning(s))" if issues else ""))
    if total_errors:
        print(f"{total_errors} error(s)", file=sys.stderr)
        return 1
    return 0


# --- render ------------------------------------------------------------------------------------
def _load_render_config(path: str, key: str, target: Target) -> FallbackConfig | None:
    docs = _documents(path)
    doc = docs[0]
    config, issues = (None, list(doc.issues)) if doc.issues else _load_config_doc(doc.data, key, doc.node, path, target)
    _print_issues(sys.stderr, path, issues)
    if len(docs) > 1 and config is not None:
        print(f"{path}: warning: only the first document is read as the configuration", file=sys.stderr)
    return config


def _load_render_overlays(paths: Sequence[str], target: Target) -> list[OverlayRule] | None:
    overlays: list[OverlayRule] = []
    failed = False
    for path in _expand(paths):
        docs = _documents(path)
        for doc in docs:
            where = path if len(docs) == 1 and doc.index == 0 else f"{path} (document {doc.index + 1})"
            kind = _kind_of(doc.data)
            if not doc.issues and kind not in (OVERLAY_KIND, "NodeOverlay"):
                print(
                    f"{where}: skipped {doc.data.get('kind') if kind == 'other' else kind} (not a DRANodeOverlay)",
                    file=sys.stderr,
                )
                continue
            rule: OverlayRule | None = None
            issues = list(doc.issues) or _not_a_dranodeoverlay(doc.data)
            if not issues:
                rule, issues = load_overlay(doc.data, target)
            _print_issues(sys.stderr, where, issues)
            failed |= bool(errors(issues))
            if rule is not None:
                overlays.append(rule)
    return None if failed else overlays


def _load_nodes(path: str) -> list[Mapping[str, Any]] | None:
    """The Node manifests of a file: Nodes, or a List of them (`kubectl get nodes -o yaml`)."""
    nodes: list[Mapping[str, Any]] = []
    for doc in _documents(path):
        if doc.issues:
            _print_issues(sys.stderr, path, doc.issues)
            return None
        items = doc.data.get("items") or [] if _kind_of(doc.data) == "List" else [doc.data]
        for item in items:
            meta = item.get("metadata") if isinstance(item, Mapping) else None
            if not isinstance(meta, Mapping) or not meta.get("name") or item.get("kind", "Node") != "Node":
                print(f"{path}: a Node manifest (or a List of them) with metadata.name is needed", file=sys.stderr)
                return None
            nodes.append(item)
    return nodes


def _why_no_match(labels: Mapping[str, str], overlays: Sequence[OverlayRule], config: FallbackConfig) -> list[str]:
    """For each overlay and mapping, the first requirement or selector term the node fails."""
    out = []
    for overlay in overlays:
        reason = first_failing_requirement(overlay.requirements, labels)
        out.append(f"  overlay {overlay.name}: {reason}")
    for mapping in config.mappings:
        reason = first_failing_selector_term(mapping.selector, labels)
        out.append(f"  mapping {mapping.name}: {reason}")
    if not overlays and not config.mappings:
        out.append("  (no overlays and no mappings were given: --overlay, --config)")
    return out


def _render_node(
    node: Mapping[str, Any], overlays: list[OverlayRule], config: FallbackConfig, target: Target
) -> tuple[list[dict[str, Any]], bool]:
    """Prints one summary line for the node (and why nothing matches); (its manifests, ok)."""
    meta = node["metadata"]
    name = meta["name"]
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    if not KwokNodeRule().matches(labels, meta.get("annotations") or {}):
        print(
            f"node {name}: not a KWOK node (no annotation {KWOK_NODE_ANNOTATION}, label "
            f"{' or '.join(f'{k}={v}' for k, v in DEFAULT_KWOK_LABELS)}): the driver publishes nothing for it",
            file=sys.stderr,
        )
        return [], True
    ordered = order_overlays(overlays)
    resolution = resolve(labels, ordered, config)
    if not resolution.pools:
        print(f"node {name}: no overlay or mapping matches: no slices", file=sys.stderr)
        for line in _why_no_match(labels, ordered, config):
            print(line, file=sys.stderr)
        return [], True
    ref = NodeRef(name, meta.get("uid") or "00000000-0000-0000-0000-000000000000")
    try:
        slices = render(ref, resolution, target.limits)
    except RenderError as exc:
        _print_issues(sys.stderr, f"node {name}", exc.issues)
        return [], False
    pools = []
    for pool in slices.pools:
        n = sum(len(s.content.get("devices", [])) for s in pool.slices)
        pools.append(f"{pool.driver}: {len(pool.slices)} slice(s), {n} device(s), from {pool.source}")
    print(f"node {name}: {'; '.join(pools)}", file=sys.stderr)
    for c in resolution.conflicts:
        print(
            f"  conflict: overlay {c.overlay} lost driver {c.driver} to {c.winner} at weight {c.weight}",
            file=sys.stderr,
        )
    plan = plan_node(name, slices, [], DEFAULT_MANAGED_BY)
    return [a.manifest for p in plan.pools for a in p.applies], True


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
    for node in nodes:
        out, fine = _render_node(node, overlays, config, target)
        manifests += out
        ok &= fine
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
        unready_after=args.unready_after,
        kubernetes_version=args.kubernetes_version or None,
        feature_gates=args.feature_gates,
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


def cmd_run(args: argparse.Namespace) -> int:
    from .shell.controller import run

    settings = settings_from_args(args)
    configure_logging(settings.log_format, settings.log_level)
    asyncio.run(run(settings))
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


def cmd_crd(args: argparse.Namespace) -> int:
    from .crd import render_crd_yaml

    sys.stdout.write(render_crd_yaml())
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    sys.stdout.write(support_table_markdown())
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
        "--resync-seconds",
        type=float,
        default=float(_env("RESYNC_SECONDS", "300")),
        help="seconds between safety-net full resyncs, which cost no API request (default: 300)",
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
