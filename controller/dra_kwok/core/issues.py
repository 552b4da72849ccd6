"""Validation findings that name the field, the bad value and the fix.

Every rule the core checks reports through `Issue`, so the CLI, Events, overlay conditions and
logs all show the same text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Path = tuple[str | int, ...]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


def format_path(path: Path) -> str:
    """Render a path the way a user would write it: `mappings[0].resourceSlice.devices[2].name`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif (
            len(part) <= 80 and part.replace("_", "").replace("-", "").isalnum() and "." not in part and "/" not in part
        ):
            out += f".{part}" if out else part
        else:
            out += f"[{_short(part)}]"
    return out or "<root>"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters, for quoting user input inside a message."""
    return _short(value, limit)


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding: where, what was there, what is wrong, how to fix it."""

    path: Path
    message: str
    value: Any = None
    fix: str | None = None
    severity: Severity = Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        text = f"{format_path(self.path)}: {self.message}"
        if self.value is not None:
            text += f" (got {_short(self.value)})"
        if self.fix:
            text += f"; fix: {self.fix}"
        return text

    def under(self, prefix: Path) -> Issue:
        """The same issue, located under `prefix` (for nesting a sub-document's findings)."""
        return Issue(prefix + self.path, self.message, self.value, self.fix, self.severity)


def errors(issues: Iterable[Issue]) -> list[Issue]:
    return [i for i in issues if i.is_error]


def warnings(issues: Iterable[Issue]) -> list[Issue]:
    return [i for i in issues if not i.is_error]


class InvalidConfiguration(ValueError):
    """Raised when a document has at least one error; carries every finding, warnings included."""

    def __init__(self, source: str, issues: Sequence[Issue]) -> None:
        self.source = source
        self.issues = list(issues)
        errs = errors(self.issues)
        lines = "\n".join(f"  - {i}" for i in errs)
        super().__init__(f"{source}: {len(errs)} error(s):\n{lines}")
