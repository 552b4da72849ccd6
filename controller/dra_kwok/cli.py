"""The `dra-kwok` command: `run` the controller, `render` what a node would get, `validate` files,
print the `crd`.

Every `run` flag also reads an environment variable (`DRA_KWOK_<FLAG>`), which is how the Helm
chart configures it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from .core.config import (
    DEFAULT_CONFIGMAP_KEY,
    FallbackConfig,
    config_text_from_configmap,
    load_config_data,
    parse_yaml,
)
from .core.issues import Issue, errors
from .core.models import OVERLAY_KIND
from .core.overlay import OverlayRule, load_overlay
from .core.plan import plan_node
from .core.render import DEFAULT_MANAGED_BY, NodeRef, RenderError, render
from .core.resolve import KwokNodeRule, order_overlays, resolve
from .shell.settings import DEFAULT_NAMESPACE, Settings


def _env(name: str, default: str) -> str:
    return os.environ.get(f"DRA_KWOK_{name}", default)


def _env_list(name: str) -> list[str] | None:
    """A comma-separated environment variable as a list; None when unset (the flag's default)."""
    value = os.environ.get(f"DRA_KWOK_{name}")
    return [x.strip() for x in value.split(",") if x.strip()] if value else None


# --- documents ---------------------------------------------------------------------------------
def _documents(path: str) -> Iterator[tuple[int, Any, list[Issue]]]:
    """Each YAML document of a file (or '-' for stdin), with parse errors as Issues."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        docs = [d for d in yaml.safe_load_all(text)]
    except yaml.YAMLError:
        _, issues = parse_yaml(text, path)
        yield 0, None, issues
        return
    for i, doc in enumerate(docs):
        if doc is not None:
            yield i, doc, []


def _kind_of(doc: Any) -> str:
    if isinstance(doc, Mapping):
        kind = doc.get("kind")
        if kind in ("ConfigMap", OVERLAY_KIND, "List"):
            return str(kind)
        if kind:
            return "other"
        if "mappings" in doc or "driver" in doc:
            return "config"
        if isinstance(doc.get("config"), Mapping):
            return "values"  # the Helm chart's values: `config` holds config.yaml
    return "unknown"


def _load_config_doc(doc: Any, key: str) -> tuple[FallbackConfig | None, list[Issue]]:
    if _kind_of(doc) == "ConfigMap":
        text, issues = config_text_from_configmap(doc, key)
        if text is None:
            return None, issues
        data, issues = parse_yaml(text, f"data[{key!r}]")
        if issues:
            return None, issues
        cfg, issues = load_config_data(data)
        return cfg, [i.under(("data", key)) for i in issues]
    return load_config_data(doc)


def _print_issues(out: TextIO, where: str, issues: Sequence[Issue]) -> None:
    for issue in issues:
        out.write(f"{where}: {issue.severity.value}: {issue}\n")


# --- validate ----------------------------------------------------------------------------------
def _validate_doc(doc: Any, key: str) -> tuple[str, list[Issue]]:
    """(a label for the document, its findings)."""
    kind = _kind_of(doc)
    name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc, Mapping) else "?"
    if kind == OVERLAY_KIND:
        return f" DRANodeOverlay/{name}", load_overlay(doc)[1]
    if kind == "ConfigMap":
        return f" ConfigMap/{name}", _load_config_doc(doc, key)[1]
    if kind == "config":
        return "", _load_config_doc(doc, key)[1]
    if kind == "values":
        return " (Helm values)", [i.under(("config",)) for i in load_config_data(doc["config"])[1]]
    got = doc.get("kind") if isinstance(doc, Mapping) else type(doc).__name__
    return "", [
        Issue(
            (),
            "not a ConfigMap, a DRANodeOverlay, a config.yaml or chart values document",
            got,
            "check the file; a bare config.yaml needs 'driver' or 'mappings'",
        )
    ]


def cmd_validate(args: argparse.Namespace) -> int:
    total_errors = 0
    for path in args.files:
        for index, doc, parse_issues in _documents(path):
            docs = doc.get("items") or [] if _kind_of(doc) == "List" else [doc]
            for j, item in enumerate(docs):
                where = path if index == 0 else f"{path} (document {index + 1})"
                if len(docs) > 1 or _kind_of(doc) == "List":
                    where += f" items[{j}]"
                if _kind_of(item) == "other":
                    if not args.quiet:
                        print(f"{where}: skipped {item.get('kind')} (not a dra-kwok document)")
                    continue
                label, issues = ("", list(parse_issues)) if parse_issues else _validate_doc(item, args.key)
                where += label
                _print_issues(sys.stdout, where, issues)
                n = len(errors(issues))
                total_errors += n
                if not n and not args.quiet:
                    print(f"{where}: ok" + (f" ({len(issues)} warning(s))" if issues else ""))
    if total_errors:
        print(f"{total_errors} error(s)", file=sys.stderr)
        return 1
    return 0


# --- render ------------------------------------------------------------------------------------
def cmd_render(args: argparse.Namespace) -> int:
    config: FallbackConfig | None = FallbackConfig()
    if args.config:
        docs = list(_documents(args.config))
        if not docs:
            print(f"{args.config}: empty file", file=sys.stderr)
            return 1
        _, doc, issues = docs[0]
        if not issues:
            config, issues = _load_config_doc(doc, args.key)
        _print_issues(sys.stderr, args.config, issues)
        if config is None:
            return 1
    overlays: list[OverlayRule] = []
    for path in args.overlay or []:
        for _, doc, issues in _documents(path):
            rule: OverlayRule | None = None
            if not issues:
                rule, issues = load_overlay(doc)
            _print_issues(sys.stderr, path, issues)
            if errors(issues):
                return 1
            if rule is not None:
                overlays.append(rule)
    node_docs = list(_documents(args.node))
    if not node_docs or node_docs[0][2]:
        _print_issues(sys.stderr, args.node, node_docs[0][2] if node_docs else [Issue((), "empty file")])
        return 1
    node = node_docs[0][1]
    meta = node.get("metadata") or {} if isinstance(node, Mapping) else {}
    name = meta.get("name")
    if not name:
        print(f"{args.node}: a Node manifest with metadata.name is needed", file=sys.stderr)
        return 1
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    if not KwokNodeRule().matches(labels, meta.get("annotations") or {}):
        print(
            f"node {name} is not a KWOK node (no annotation kwok.x-k8s.io/node, label type=kwok or "
            "kwok.x-k8s.io/provider=kwok): the driver publishes nothing for it",
            file=sys.stderr,
        )
        return 0
    resolution = resolve(labels, order_overlays(overlays), config or FallbackConfig())
    for c in resolution.conflicts:
        print(
            f"conflict: overlay {c.overlay} lost driver {c.driver} to {c.winner} at weight {c.weight}", file=sys.stderr
        )
    if not resolution.pools:
        print(f"node {name}: no overlay or mapping matches; no slices", file=sys.stderr)
        return 0
    ref = NodeRef(name, meta.get("uid") or "00000000-0000-0000-0000-000000000000")
    try:
        slices = render(ref, resolution)
    except RenderError as exc:
        _print_issues(sys.stderr, f"node {name}", exc.issues)
        return 1
    plan = plan_node(name, slices, [], DEFAULT_MANAGED_BY)
    manifests = [a.manifest for p in plan.pools for a in p.applies]
    for pool in slices.pools:
        n = sum(len(s.content.get("devices", [])) for s in pool.slices)
        print(f"{pool.driver}: {len(pool.slices)} slice(s), {n} device(s), from {pool.source}", file=sys.stderr)
    yaml.safe_dump_all(manifests, sys.stdout, sort_keys=False)
    return 0


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
    annotations = tuple(given_annotations) if given_annotations is not None else ("kwok.x-k8s.io/node",)
    if args.kwok_label is not None:
        labels = tuple(args.kwok_label)
    elif (env_labels := _env_list("KWOK_LABELS")) is not None:
        try:
            labels = tuple(_parse_label(x) for x in env_labels)
        except argparse.ArgumentTypeError as exc:
            raise SystemExit(f"dra-kwok: DRA_KWOK_KWOK_LABELS: {exc}") from None
    else:
        labels = (("type", "kwok"), ("kwok.x-k8s.io/provider", "kwok"))
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
    )


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


# --- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dra-kwok", description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run the controller",
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
    run.add_argument("--configmap-name", default=_env("CONFIGMAP_NAME", "dra-kwok-configmap"))
    run.add_argument("--namespace", default=_env("NAMESPACE", DEFAULT_NAMESPACE), help="the ConfigMap's namespace")
    run.add_argument("--key", default=_env("CONFIGMAP_KEY", DEFAULT_CONFIGMAP_KEY), help="the ConfigMap key")
    run.add_argument(
        "--kwok-annotation",
        action="append",
        metavar="KEY",
        help="an annotation that marks KWOK nodes (repeatable; env DRA_KWOK_KWOK_ANNOTATIONS, comma-separated; "
        "default kwok.x-k8s.io/node)",
    )
    run.add_argument(
        "--kwok-label",
        action="append",
        type=_parse_label,
        metavar="KEY=VALUE",
        help="a label that marks KWOK nodes (repeatable; env DRA_KWOK_KWOK_LABELS, comma-separated; "
        "default type=kwok, kwok.x-k8s.io/provider=kwok)",
    )
    run.add_argument(
        "--managed-by",
        default=_env("MANAGED_BY", DEFAULT_MANAGED_BY),
        help="value of the managed-by label on our slices (one per installation)",
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
        help="a driver whose labelled slices we may delete even if no configuration names it now "
        "(repeatable; env DRA_KWOK_DRIVERS, comma-separated)",
    )
    run.add_argument("--metrics-port", type=int, default=int(_env("METRICS_PORT", "8080")), help="0 disables")
    run.add_argument("--health-port", type=int, default=int(_env("HEALTH_PORT", "8081")), help="0 disables")
    run.add_argument("--bind-address", default=_env("BIND_ADDRESS", "0.0.0.0"))
    run.add_argument("--log-format", choices=("text", "json"), default=_env("LOG_FORMAT", "text"))
    run.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"))
    run.add_argument(
        "--concurrency", type=int, default=int(_env("CONCURRENCY", "32")), help="API requests in flight at most"
    )
    run.add_argument("--workers", type=int, default=int(_env("WORKERS", "32")), help="nodes reconciled at once")
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=float(_env("RESYNC_SECONDS", "300")),
        help="safety-net full resync interval",
    )
    run.set_defaults(func=cmd_run)

    render_p = sub.add_parser("render", help="print the ResourceSlices a node would get")
    render_p.add_argument("--config", help="a ConfigMap manifest or a bare config.yaml")
    render_p.add_argument("--key", default=DEFAULT_CONFIGMAP_KEY, help="the ConfigMap key holding config.yaml")
    render_p.add_argument("--overlay", action="append", help="a DRANodeOverlay manifest (repeatable)")
    render_p.add_argument("--node", required=True, help="a Node manifest")
    render_p.set_defaults(func=cmd_render)

    validate = sub.add_parser("validate", help="check ConfigMaps, config.yaml files and DRANodeOverlays")
    validate.add_argument("files", nargs="+", help="files to check ('-' for stdin)")
    validate.add_argument("--key", default=DEFAULT_CONFIGMAP_KEY, help="the ConfigMap key holding config.yaml")
    validate.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    validate.set_defaults(func=cmd_validate)

    cleanup = sub.add_parser("cleanup", help="delete all slices this installation manages (used on uninstall)")
    cleanup.add_argument("--kubeconfig", default=_env("KUBECONFIG", os.environ.get("KUBECONFIG", "")))
    cleanup.add_argument("--managed-by", default=_env("MANAGED_BY", DEFAULT_MANAGED_BY))
    cleanup.add_argument("--log-format", choices=("text", "json"), default=_env("LOG_FORMAT", "text"))
    cleanup.set_defaults(func=cmd_cleanup)

    crd = sub.add_parser("crd", help="print the DRANodeOverlay CustomResourceDefinition")
    crd.set_defaults(func=cmd_crd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except FileNotFoundError as exc:
        print(f"dra-kwok: {exc.filename}: no such file", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `dra-kwok render ... | head`
        sys.stderr.close()
        return 0
    return result


if __name__ == "__main__":
    sys.exit(main())
