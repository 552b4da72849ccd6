"""Every ConfigMap, config.yaml and DRANodeOverlay example in the README and docs/ is valid, so
the examples work when pasted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from dra_kwok.cli import _validate_doc
from dra_kwok.core.issues import errors

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "examples").rglob("*.yaml"))]
BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)


def _examples() -> list[tuple[str, object]]:
    found = []
    for path in DOCS:
        text = path.read_text()
        blocks = BLOCK.findall(text) if path.suffix == ".md" else [text]
        for i, block in enumerate(blocks):
            for j, doc in enumerate(yaml.safe_load_all(block)):
                docs = doc.get("items", []) if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
                for item in docs:
                    kind = item.get("kind") if isinstance(item, dict) else None
                    if kind in ("ConfigMap", "DRANodeOverlay") or (
                        isinstance(item, dict) and not kind and ("mappings" in item or "config" in item)
                    ):
                        found.append((f"{path.relative_to(REPO)} block {i} doc {j}", item))
    return found


EXAMPLES = _examples()


def test_the_docs_have_examples() -> None:
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize(("where", "doc"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_example_is_valid(where: str, doc: object) -> None:
    _, issues = _validate_doc(doc, "config.yaml")
    assert not errors(issues), "\n".join(str(i) for i in issues)
