"""The ConfigMap fallback: parse and validate `config.yaml` into ordered mapping rules."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from typing import Any, ClassVar

import yaml
from pydantic import ValidationError

from .issues import Issue, Path, Severity, errors
from .models import DriverConfig, LabelSelector
from .models import Mapping as MappingModel
from .profiles.expand import expand_mapping
from .simulation_rules import simulation_issues
from .validation import (
    PoolSpec,
    Source,
    driver_issues,
    pool_issues,
    pydantic_issues,
    slice_field_issues,
    unknown_field_issues,
)
from .versions import DEFAULT_TARGET, Target


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
# libyaml's parser where PyYAML has it (the wheels do): it composes a 1 MB config.yaml about ten
# times faster than the pure-Python one; constructing and every check stay the same.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """The safe loader, remembering each plain scalar's implicit tag: the resolver's regexes ran
    once per scalar (a third of composing a large file), and the same few words recur. The safe
    loader has no path resolvers, so the tag depends on nothing else."""

    _tags: ClassVar[dict[tuple[Any, Any, Any], str]] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        key = (kind, value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(self._tags) > 100_000:
                self._tags.clear()
            self._tags[key] = tag
        return tag


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
    if "maximum nesting depth" in problem:  # libyaml's limit (1,000 levels), as deep recursion is ours
        return Issue((), f"{what} is nested too deeply to parse", fix="flatten the document")
    return Issue((), f"{what} is not valid YAML{where}: {problem}", fix="fix the YAML syntax")


def parse_yaml(text: str, what: str, first_line: int = 1) -> tuple[Any, list[Issue]]:
    """Load YAML, turning a syntax error into an Issue that names the line and column, and
    refusing a document that anchors and aliases blow up or that writes a key twice. Lines are
    counted from `first_line` (where the text starts in its file, for an embedded config.yaml)."""
    try:
        loader = _Loader(text)
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
        loader = _Loader(text)
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


def load_config_text(text: str, target: Target = DEFAULT_TARGET) -> tuple[FallbackConfig | None, list[Issue]]:
    """Parse `config.yaml` text for `target`. Returns None for the config when there is any error."""
    data, issues = parse_config_yaml(text)
    if issues:
        return None, issues
    return load_config_data(data, target)


# Anchors, aliases, directives or document markers anywhere (or text that looks like them): the
# general path. (The fast path's chunks would not share anchors, nor see a second document.)
_SHARED_NODES = re.compile(r"(?:^|[\s\[{,:-])[&*][^\s,\[\]{}]|^%|^---|^\.\.\.", re.MULTILINE)
_MAPPINGS_KEY = re.compile(r"mappings:[ ]*(?:#.*)?")
_ITEM_START = re.compile(r"( *)-(?: |$)")
# A mapping's YAML (the lines of one `- ` item, as written) -> its data and node count, as parsed
# and checked before: with no anchors, aliases or directives, the same lines are the same data.
_ITEM_CACHE: dict[str, tuple[Any, int]] = {}
ITEM_CACHE_SIZE = 20_000


def parse_config_yaml(text: str) -> tuple[Any, list[Issue]]:
    """`parse_yaml` for config.yaml, fast for a large file of which a few mappings changed: the
    block sequence under `mappings:` is cut into its items by their lines, and an item whose lines
    are unchanged is not parsed again. Anything unusual (anchors, flow style, a second document, an
    item that does not parse on its own) takes `parse_yaml`'s path: the result is always the same as
    `parse_yaml`'s, with the same line numbers."""
    what = "config.yaml"
    split = None if _SHARED_NODES.search(text) else _split_mappings(text)
    if split is None:
        return parse_yaml(text, what)
    head, items = split
    data, problems = parse_yaml(head, what)
    if problems or not isinstance(data, dict) or "mappings" not in data or data["mappings"] is not None:
        return parse_yaml(text, what)
    size = 0
    built: list[Any] = []
    for index, (first_line, chunk) in enumerate(items):
        cached = _ITEM_CACHE.get(chunk)
        if cached is None:
            try:
                loader = _Loader(chunk)
                try:
                    node = loader.get_single_node()
                    if not isinstance(node, yaml.SequenceNode) or len(node.value) != 1:
                        return parse_yaml(text, what)
                    item = node.value[0]
                    found = _duplicate_keys(item, ("mappings", index), set(), what, first_line)
                    if found:
                        return parse_yaml(text, what)  # its findings, in the whole file's order
                    cached = (loader.construct_object(item, deep=True), _expanded_size(item, {}))
                finally:
                    loader.dispose()
            except (yaml.YAMLError, RecursionError):
                return parse_yaml(text, what)  # the error as the whole file gives it
            if len(_ITEM_CACHE) >= ITEM_CACHE_SIZE:
                _ITEM_CACHE.clear()
            _ITEM_CACHE[chunk] = cached
        built.append(cached[0])
        size += cached[1]
    if size > MAX_YAML_NODES:
        return parse_yaml(text, what)
    data["mappings"] = built
    return data, []


def _split_mappings(text: str) -> tuple[str, list[tuple[int, str]]] | None:
    """The text with the items of the top-level block sequence `mappings:` blanked out (so the
    other lines keep their numbers), and each item's first line number and lines; None when the
    file is not laid out that way."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if _MAPPINGS_KEY.fullmatch(line)), None)
    if start is None:
        return None
    items: list[tuple[int, list[str]]] = []
    indent: int | None = None
    end = len(lines)
    for i in range(start + 1, len(lines)):
        line = lines[i]
        stripped = line.lstrip(" ")
        if line.startswith("\t") or "\t" in line[: len(line) - len(stripped)]:
            return None
        if not stripped or stripped.startswith("#"):
            if items:
                items[-1][1].append(line)
            continue
        m = _ITEM_START.match(line)
        depth = len(line) - len(stripped)
        if m is not None and (indent is None or depth == indent):
            indent = depth
            items.append((i + 1, [line]))
        elif indent is not None and depth > indent:
            items[-1][1].append(line)
        else:
            end = i
            break
    if not items:
        return None
    first = items[0][0] - 1
    head = lines[:first] + [""] * (end - first) + lines[end:]
    return "\n".join(head), [(n, "\n".join(chunk) + "\n") for n, chunk in items]


def load_config_data(data: Any, target: Target = DEFAULT_TARGET) -> tuple[FallbackConfig | None, list[Issue]]:
    """Validate already-loaded `config.yaml` data (an empty document means no mappings). Each
    mapping is validated on its own and remembered by content (`_check_mapping`), so reloading a
    large configuration in which a few mappings changed validates only those."""
    if data is None:
        return EMPTY_CONFIG, [Issue((), "the configuration is empty: no fallback mappings", severity=Severity.WARNING)]
    if not isinstance(data, MappingABC):
        return None, [Issue((), "config.yaml must be a mapping with 'driver' and 'mappings'", type(data).__name__)]
    raw_mappings = data.get("mappings", [])
    top = {k: v for k, v in data.items() if k != "mappings" or not isinstance(raw_mappings, list)}
    # Checked on the raw data so they are reported even when the structure is wrong.
    issues = unknown_field_issues(DriverConfig, top)
    if isinstance(data.get("driver"), str):
        issues += driver_issues(data["driver"], ("driver",))
    try:
        cfg = DriverConfig.model_validate(top)
    except ValidationError as exc:
        return None, pydantic_issues(exc) + issues
    if not isinstance(raw_mappings, list):
        return None, issues  # pragma: no cover - DriverConfig refuses it above
    rules: list[MappingRule] = []
    seen_names: set[str] = set()
    for i, raw in enumerate(raw_mappings):
        path: Path = ("mappings", i)
        checked = _check_mapping(raw, cfg.driver, i, target)
        issues += checked.issues
        if checked.rule is None:
            continue
        if checked.rule.name in seen_names:
            issues.append(
                Issue(path + ("name",), "duplicate mapping name", checked.rule.name, severity=Severity.WARNING)
            )
        seen_names.add(checked.rule.name)
        rules.append(checked.rule)
    if errors(issues):
        return None, issues
    return FallbackConfig(tuple(rules)), issues


@dataclass(frozen=True, slots=True)
class _CheckedMapping:
    """One mapping validated on its own: its rule (None when it has an error) and its findings."""

    rule: MappingRule | None
    issues: tuple[Issue, ...]


# Mappings validated before, by (default driver, position, content): a ConfigMap edit in a 1 MB
# config.yaml re-validates the mappings it changed, not 3,000 others (findings name positions, so
# a mapping that moved is validated again). Bounded; cleared when full.
_MAPPING_CACHE: dict[tuple[str | None, int, Target, str], _CheckedMapping] = {}
MAPPING_CACHE_SIZE = 20_000


def _check_mapping(raw: Any, default_driver: str | None, index: int, target: Target) -> _CheckedMapping:
    try:
        key = (default_driver, index, target, json.dumps(raw, sort_keys=True, default=repr))
    except (TypeError, ValueError):  # keys of mixed types cannot be sorted: not worth remembering
        return _validate_mapping(raw, default_driver, ("mappings", index), target)
    found = _MAPPING_CACHE.get(key)
    if found is None:
        found = _validate_mapping(raw, default_driver, ("mappings", index), target)
        if len(_MAPPING_CACHE) >= MAPPING_CACHE_SIZE:
            _MAPPING_CACHE.clear()
        _MAPPING_CACHE[key] = found
    return found


def _validate_mapping(raw: Any, default_driver: str | None, path: Path, target: Target) -> _CheckedMapping:
    raw, profile_issues = expand_mapping(raw, path)
    if profile_issues:
        return _CheckedMapping(None, tuple(profile_issues))
    issues = unknown_field_issues(MappingModel, raw, path)
    rs = raw.get("resourceSlice") if isinstance(raw, MappingABC) else None
    if isinstance(rs, MappingABC) and isinstance(rs.get("driver"), str):
        issues += driver_issues(rs["driver"], path + ("resourceSlice", "driver"))
    try:
        m = MappingModel.model_validate(raw)
    except ValidationError as exc:
        return _CheckedMapping(None, tuple(pydantic_issues(exc, path) + issues))
    if not m.node_selector.match_labels and not m.node_selector.match_expressions:
        issues.append(
            Issue(
                path + ("nodeSelector",),
                "empty selector: this mapping matches every KWOK node, and mappings after it never apply",
                severity=Severity.WARNING,
            )
        )
    driver = m.resource_slice.driver or default_driver
    spath = path + ("resourceSlice",)
    if driver is None:
        issues.append(Issue(spath + ("driver",), "no driver: set the top-level 'driver' or resourceSlice.driver"))
        return _CheckedMapping(None, tuple(issues))
    rs = m.resource_slice
    devices = [(spath + ("devices", j), d) for j, d in enumerate(rs.devices)]
    issues += pool_issues(
        driver, devices, ((spath + ("sharedCounters", j), c) for j, c in enumerate(rs.shared_counters)), target
    )
    issues += slice_field_issues(spath, rs.partition_type_attribute, rs.skip_node_operations, devices, target)
    pool = PoolSpec(
        driver,
        tuple(rs.devices),
        tuple(rs.shared_counters),
        Source("mapping", m.name),
        rs.partition_type_attribute,
        tuple(rs.skip_node_operations),
        m.simulation,
    )
    issues += simulation_issues(path + ("simulation",), m.simulation, [pool], target)
    if errors(issues):
        return _CheckedMapping(None, tuple(issues))
    return _CheckedMapping(MappingRule(m.name, m.node_selector, pool), tuple(issues))


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
