"""Reading YAML with positions: the part of loading that knows about lines.

ruamel.yaml (YAML 1.2) keeps every node's line, so a problem found anywhere later — by pydantic,
the pattern compiler, CEL or Jinja — can be reported as `file:line`. YAML 1.2 also means `on:`,
`yes` and `no` stay strings, and we keep timestamps as strings too: rules never want dates.
Anchors and aliases work; merge keys (`<<`) are refused rather than half-supported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

# ruamel.yaml is imported by `parse`, not here: rules loaded from a pre-validated artifact
# (`triggers compile`) never parse YAML, and the import costs a cold start ~15 ms.

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"


class LineMap(dict[Any, Any]):
    """A dict that remembers the 1-based line of each key."""

    __slots__ = ("line", "key_lines")
    line: int
    key_lines: dict[Any, int]


class LineSeq(list[Any]):
    """A list that remembers the 1-based line of each item."""

    __slots__ = ("line", "item_lines")
    line: int
    item_lines: list[int]


class YAMLProblem(ValueError):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def parse(text: str) -> Any:
    """Parse one YAML 1.2 document into LineMap/LineSeq/scalars. Raises YAMLProblem.

    Composing runs in libyaml (ruamel.yaml.clib) when it is installed — 15x faster than the pure
    parser, which matters for thousands of rules — and the tree is built here so every node keeps
    its line.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    yaml = YAML(typ="safe", pure=False)
    try:
        root = yaml.compose(text)
        return None if root is None else _build(root, yaml.constructor)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = (exc.problem or "invalid YAML").split("\n")[0]
        if exc.context and "duplicate" not in detail:
            detail = f"{exc.context}: {detail}"
        raise YAMLProblem(mark.line + 1 if mark else None, f"YAML: {detail}") from None


_NODES: tuple[Any, Any, Any] | None = None


def _node_classes() -> tuple[Any, Any, Any]:
    global _NODES
    if _NODES is None:
        from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

        _NODES = (ScalarNode, SequenceNode, MappingNode)
    return _NODES


def _build(node: Any, constructor: Any) -> Any:
    ScalarNode, SequenceNode, MappingNode = _NODES or _node_classes()
    if isinstance(node, ScalarNode):
        if node.tag == _TIMESTAMP:
            # A bare `2026-11-21` is a string to match or pass on, never a date object.
            return node.value
        return constructor.construct_object(node, deep=True)
    if isinstance(node, SequenceNode):
        seq = LineSeq(_build(item, constructor) for item in node.value)
        seq.line = node.start_mark.line + 1
        seq.item_lines = [item.start_mark.line + 1 for item in node.value]
        return seq
    if isinstance(node, MappingNode):
        mapping = LineMap()
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE:
                raise YAMLProblem(line, "YAML: merge keys (<<) are not supported in rules files")
            key = _build(key_node, constructor)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise YAMLProblem(line, "YAML: mapping keys must be plain scalars")
            if key in mapping:
                first = mapping.key_lines[key]
                raise YAMLProblem(line, f"YAML: duplicate key {key!r} (first on line {first})")
            mapping[key] = _build(value_node, constructor)
            mapping.key_lines[key] = line
        return mapping
    raise YAMLProblem(node.start_mark.line + 1, f"YAML: unsupported node {node.tag}")


def line_of(node: Any, path: tuple[str | int, ...], default: int | None = None) -> int | None:
    """1-based line of the deepest node along `path` that exists (keys are reported at the key)."""
    line = default
    for key in path:
        if isinstance(node, LineMap) and key in node:
            line = node.key_lines[key]
            node = node[key]
        elif isinstance(node, LineSeq) and isinstance(key, int) and 0 <= key < len(node):
            line = node.item_lines[key]
            node = node[key]
        else:
            break
    return line


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute_env(
    node: Any, environ: Mapping[str, str], report: Callable[[int | None, str], None]
) -> None:
    """Replace `${NAME}` and `${NAME:-default}` in every string, in place. `$${` is a literal."""
    for container, key, line in _strings(node):
        value = container[key]
        if "${" not in value:
            continue

        def replace(match: re.Match[str], line: int | None = line) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            report(line, f"environment variable {name} is not set (write ${{{name}:-default}})")
            return match.group(0)

        parts = value.split("$${")
        container[key] = "${".join(_REFERENCE.sub(replace, part) for part in parts)


def _strings(node: Any) -> Iterator[tuple[Any, Any, int | None]]:
    if isinstance(node, LineMap):
        for key in node:
            if isinstance(node[key], str):
                yield node, key, node.key_lines[key]
            else:
                yield from _strings(node[key])
    elif isinstance(node, LineSeq):
        for index, item in enumerate(node):
            if isinstance(item, str):
                yield node, index, node.item_lines[index]
            else:
                yield from _strings(item)


def plain(node: Any) -> Any:
    """The same data as built-in dicts and lists (for pydantic, patterns and JSON output)."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node
