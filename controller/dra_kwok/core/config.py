"""The ConfigMap fallback: parse and validate `config.yaml` into ordered mapping rules."""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from .issues import Issue, Path, Severity, errors
from .models import DriverConfig, LabelSelector
from .validation import PoolSpec, Source, driver_issues, pool_issues, pydantic_issues, unknown_field_issues

DEFAULT_CONFIGMAP_NAME = "dra-kwok-configmap"
DEFAULT_CONFIGMAP_KEY = "config.yaml"


@dataclass(frozen=True, slots=True)
class MappingRule:
    """One validated mapping: nodes matching `selector` get `pool`."""

    name: str
    selector: LabelSelector
    pool: PoolSpec


@dataclass(frozen=True, slots=True)
class FallbackConfig:
    """Validated mappings in file order; the first whose selector matches a node applies."""

    mappings: tuple[MappingRule, ...] = ()

    @property
    def drivers(self) -> frozenset[str]:
        return frozenset(m.pool.driver for m in self.mappings)


EMPTY_CONFIG = FallbackConfig()


# YAML nodes a document may expand to through anchors and aliases. A 1 MiB ConfigMap written
# out holds far fewer; 4 KB of aliases (`[*a, *a, ...]` nested twice) expand to millions, which
# would take minutes to validate in the event loop.
MAX_YAML_NODES = 200_000


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many nodes `node` stands for once aliases are expanded; each node is sized once."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    sizes[key] = 1  # a recursive alias counts once
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(n, sizes) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    sizes[key] = size
    return size


def _duplicate_keys(node: yaml.Node, path: Path, seen: set[int], what: str, first_line: int = 1) -> list[Issue]:
    """Keys written twice in one mapping. YAML loaders keep the last silently, so a second
    `mappings:` would drop the first list without a word: refused, naming both lines (counted
    from `first_line`, the line the text starts at in its file)."""
    if id(node) in seen:
        return []
    seen.add(id(node))
    found: list[Issue] = []
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found += _duplicate_keys(item, (*path, index), seen, what, first_line)
    elif isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                line = key.start_mark.line + first_line
                if key.value in lines:
                    found.append(
                        Issue(
                            (*path, key.value),
                            f"is written twice in {what} (lines {lines[key.value]} and {line}); "
                            "YAML would keep only the second",
                            fix="merge the two into one key",
                        )
                    )
                else:
                    lines[key.value] = line
                found += _duplicate_keys(value, (*path, key.value), seen, what, first_line)
            else:
                found += _duplicate_keys(value, path, seen, what, first_line)
    return found


def _checked_node(node: yaml.Node, what: str, first_line: int) -> list[Issue]:
    """Refuses a document that anchors and aliases blow up, or that writes a key twice."""
    size = _expanded_size(node, {})
    if size > MAX_YAML_NODES:
        return [
            Issue(
                (),
                f"{what} expands to {size} YAML nodes through anchors and aliases (at most {MAX_YAML_NODES})",
                fix="write the repeated parts out, or repeat them less",
            )
        ]
    return _duplicate_keys(node, (), set(), what, first_line)


def _yaml_error(exc: yaml.YAMLError, what: str, first_line: int) -> Issue:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + first_line}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return Issue((), f"{what} is not valid YAML{where}: {problem}", fix="fix the YAML syntax")


def parse_yaml(text: str, what: str, first_line: int = 1) -> tuple[Any, list[Issue]]:
    """Load YAML, turning a syntax error into an Issue that names the line and column, and
    refusing a document that anchors and aliases blow up or that writes a key twice. Lines are
    counted from `first_line` (where the text starts in its file, for an embedded config.yaml)."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, []
            problems = _checked_node(node, what, first_line)
            if problems:
                return None, problems
            return loader.construct_document(node), []
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        return None, [_yaml_error(exc, what, first_line)]
    except RecursionError:
        return None, [Issue((), f"{what} is nested too deeply to parse", fix="flatten the document")]


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """One document of a YAML stream: its data (None if it has problems), its node (for the
    lines of what it embeds) and its problems."""

    index: int
    data: Any
    node: yaml.Node | None
    issues: tuple[Issue, ...] = ()


def parse_yaml_documents(text: str, what: str) -> list[YamlDocument]:
    """Every document of a YAML stream (a file with `---` separators), each checked as
    `parse_yaml` checks one, with line numbers of the file. Empty documents are left out; a
    syntax error ends the stream with a document holding it."""
    out: list[YamlDocument] = []
    try:
        loader = yaml.SafeLoader(text)
        try:
            index = 0
            while loader.check_node():
                node = loader.get_node()
                if node is not None and not (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
                    problems = _checked_node(node, what, 1)
                    data = None if problems else loader.construct_document(node)
                    out.append(YamlDocument(index, data, node, tuple(problems)))
                index += 1
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        out.append(YamlDocument(len(out), None, None, (_yaml_error(exc, what, 1),)))
    except RecursionError:
        out.append(YamlDocument(len(out), None, None, (Issue((), f"{what} is nested too deeply to parse"),)))
    return out


def embedded_first_line(node: yaml.Node | None, *keys: str) -> int | None:
    """The file line where the block scalar at `keys` (e.g. data, config.yaml) begins its text, so
    that lines inside it can be counted in the file; None if it is not a block scalar."""
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        return node.start_mark.line + 2  # the text starts on the line after the indicator
    return None


def load_config_text(text: str) -> tuple[FallbackConfig | None, list[Issue]]:
    """Parse `config.yaml` text. Returns None for the config when there is any error."""
    data, issues = parse_yaml(text, "config.yaml")
    if issues:
        return None, issues
    return load_config_data(data)


def load_config_data(data: Any) -> tuple[FallbackConfig | None, list[Issue]]:
    """Validate already-loaded `config.yaml` data (an empty document means no mappings)."""
    if data is None:
        return EMPTY_CONFIG, [Issue((), "the configuration is empty: no fallback mappings", severity=Severity.WARNING)]
    if not isinstance(data, MappingABC):
        return None, [Issue((), "config.yaml must be a mapping with 'driver' and 'mappings'", type(data).__name__)]
    # Checked on the raw data so they are reported even when the structure is wrong.
    raw_findings = unknown_field_issues(DriverConfig, data) + _raw_driver_issues(data)
    try:
        cfg = DriverConfig.model_validate(data)
    except ValidationError as exc:
        return None, pydantic_issues(exc) + raw_findings
    issues = raw_findings
    rules: list[MappingRule] = []
    seen_names: set[str] = set()
    for i, m in enumerate(cfg.mappings):
        path = ("mappings", i)
        if m.name in seen_names:
            issues.append(Issue(path + ("name",), "duplicate mapping name", m.name, severity=Severity.WARNING))
        seen_names.add(m.name)
        if not m.node_selector.match_labels and not m.node_selector.match_expressions:
            issues.append(
                Issue(
                    path + ("nodeSelector",),
                    "empty selector: this mapping matches every KWOK node, and mappings after it never apply",
                    severity=Severity.WARNING,
                )
            )
        driver = m.resource_slice.driver or cfg.driver
        spath = path + ("resourceSlice",)
        if driver is None:
            issues.append(Issue(spath + ("driver",), "no driver: set the top-level 'driver' or resourceSlice.driver"))
            continue
        issues += pool_issues(
            driver,
            ((spath + ("devices", j), d) for j, d in enumerate(m.resource_slice.devices)),
            ((spath + ("sharedCounters", j), c) for j, c in enumerate(m.resource_slice.shared_counters)),
        )
        pool = PoolSpec(
            driver,
            tuple(m.resource_slice.devices),
            tuple(m.resource_slice.shared_counters),
            Source("mapping", m.name),
        )
        rules.append(MappingRule(m.name, m.node_selector, pool))
    if errors(issues):
        return None, issues
    return FallbackConfig(tuple(rules)), issues


def _raw_driver_issues(data: MappingABC[str, Any]) -> list[Issue]:
    issues = []
    if isinstance(data.get("driver"), str):
        issues += driver_issues(data["driver"], ("driver",))
    mappings = data.get("mappings")
    for i, m in enumerate(mappings if isinstance(mappings, list) else []):
        rs = m.get("resourceSlice") if isinstance(m, MappingABC) else None
        if isinstance(rs, MappingABC) and isinstance(rs.get("driver"), str):
            issues += driver_issues(rs["driver"], ("mappings", i, "resourceSlice", "driver"))
    return issues


def config_text_from_configmap(configmap: MappingABC[str, Any], key: str) -> tuple[str | None, list[Issue]]:
    """The configuration text stored under `key` of a ConfigMap object."""
    data = configmap.get("data") or {}
    if not isinstance(data, MappingABC):
        return None, [Issue(("data",), "must be a mapping of keys to strings", type(data).__name__)]
    if key not in data:
        present = ", ".join(sorted(data)) or "none"
        return None, [Issue(("data", key), f"the ConfigMap has no key {key!r} (keys present: {present})")]
    value = data[key]
    if not isinstance(value, str):
        return None, [Issue(("data", key), "must be a string holding YAML", type(value).__name__)]
    return value, []
