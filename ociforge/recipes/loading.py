"""Reading recipe files, and saying exactly where one is wrong.

Every recipe error is one line. YAML syntax errors give `FILE:LINE:COL`; every other
error names the field: `FILE: field 'PATH': message`, built by `Where.error` (pydantic's
errors too, through `validate`), so all of them read alike.

The YAML loader is libyaml's safe loader with two refusals PyYAML lacks: a key given
twice in one mapping (PyYAML silently keeps the last), and aliases (`*name`, `<<:`)
that expand the document past `MAX_NODES` (a "billion laughs" is a few lines that
every later walk, validation and matrix expansion would take as a billion nodes).
Both say `FILE:LINE:COL: field 'PATH': …`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import RecipeError

# libyaml's loader when PyYAML was built with it (its wheels are): ~8x faster.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# The most nodes a recipe file may hold once its aliases are expanded (the project's
# largest file holds a few thousand).
MAX_NODES = 1_000_000
_MERGE = "tag:yaml.org,2002:merge"

# pydantic's wording for the two commonest mistakes, said the way a recipe author reads it.
_MESSAGES = {"extra_forbidden": "unknown field", "missing": "required field is missing"}

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Where:
    """A field in the recipes: the file (or what asked, e.g. `--with for NAME`) and
    the dotted path inside it, `images.hello.layers[0]`."""

    source: str
    field: str = ""

    def at(self, *parts: str | int) -> Where:
        """A field below this one; ints are list indexes (`layers[0]`)."""
        field = self.field
        for part in parts:
            if isinstance(part, int):
                field += f"[{part}]"
            else:
                field += ("." if field else "") + str(part)
        return Where(self.source, field)

    def error(self, message: str) -> RecipeError:
        return RecipeError(f"{self.source}: field '{self.field}': {message}")


def validation_error(err: ValidationError, where: Where) -> RecipeError:
    """pydantic's first error, placed under `where`; how many more there are."""
    errors = err.errors()
    first = errors[0]
    # Discriminated unions add the tag ("files", "archive") to the location: keep it,
    # it tells which source kind the field belongs to.
    message = _MESSAGES.get(first["type"], first["msg"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return where.at(*first["loc"]).error(message + more)


def validate(model: type[M], data: Any, where: Where,
             context: dict[str, Any] | None = None) -> M:
    """`data` as a `model`, or a RecipeError naming the field; `context` reaches the
    validators (the project root, for `ProjectPath` fields)."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as e:
        raise validation_error(e, where) from None


class _Refused(yaml.MarkedYAMLError):
    """Well-formed YAML that a recipe may not be; `problem` names the field."""


def _field_of(root: Node, target: Node) -> str:
    """The shortest dotted path to `target` in the document (for messages only; each
    node is visited once, so an alias bomb is walked in linear time)."""
    seen: set[int] = set()
    queue: deque[tuple[Node, Where]] = deque([(root, Where(""))])
    while queue:
        node, where = queue.popleft()
        if node is target:
            return where.field
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            queue += [(v, where if k.tag == _MERGE else where.at(str(k.value)))
                      for k, v in node.value if isinstance(k, ScalarNode)]
        elif isinstance(node, SequenceNode):
            queue += [(v, where.at(i)) for i, v in enumerate(node.value)]
    return ""


def _expanded_size(root: Node) -> tuple[Node, str] | None:
    """The first node (and why) that aliases make recursive or expand past MAX_NODES;
    each distinct node is counted once and its expanded size remembered."""
    size: dict[int, int] = {}  # collections counted: their expanded size
    open_: set[int] = set()  # collections whose children are being counted
    stack: list[tuple[Node, list[Node] | None]] = [(root, None)]
    while stack:
        node, children = stack.pop()
        key = id(node)
        if children is not None:  # all counted now
            open_.discard(key)
            total = size[key] = 1 + sum(size.get(id(c), 1) for c in children)
            if total > MAX_NODES:
                return node, f"aliases expand this to more than {MAX_NODES:,} nodes"
        elif key not in size and not isinstance(node, ScalarNode):
            if key in open_:
                return node, "a recursive alias (this node contains itself)"
            open_.add(key)
            children = [n for pair in node.value for n in pair] \
                if isinstance(node, MappingNode) else node.value
            stack.append((node, children))
            stack += [(c, None) for c in children
                      if id(c) not in size and not isinstance(c, ScalarNode)]
    return None


class RecipeLoader(SAFE_LOADER):  # type: ignore[misc,valid-type]
    """The safe loader (libyaml's parser when present), refusing duplicate keys and
    alias bombs. Counting happens only in a document with anchors (`&`): without
    one, no node is shared and the document is as big as its text."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._anchors = "&" in stream
        self._root: Node | None = None
        self._own: dict[int, list[tuple[Node, Node]]] = {}  # mapping -> pairs written in it

    def get_single_node(self) -> Node | None:
        root: Node | None = super().get_single_node()
        self._root = root
        if root is not None and self._anchors:
            found = _expanded_size(root)
            if found:
                self._refuse(found[0], found[0], found[1])
        return root

    def flatten_mapping(self, node: MappingNode) -> None:
        own = node.value
        super().flatten_mapping(node)
        # PyYAML deletes the merge keys (`<<: *base`) from the parsed list in place and
        # gives the node a new one when it merges: the parsed list now holds exactly
        # the pairs written in this mapping (the first time it is flattened).
        self._own.setdefault(id(node), own)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        own = self._own[id(node)]  # flatten_mapping has run (the safe constructor calls it)
        # Nothing merged: one entry per pair, unless a key repeats. Something merged:
        # keys written here may override merged ones, so compare only those.
        if own is not node.value or len(mapping) < len(own):
            self._check_duplicates(node, [k for k, _ in own])
        return mapping

    def _check_duplicates(self, node: MappingNode, keys: list[Node]) -> None:
        """Compare keys as YAML reads them (`1` and `0x1` are one key)."""
        first: dict[Any, Node] = {}
        for key_node in keys:
            if not isinstance(key_node, ScalarNode):
                continue  # unhashable: the constructor refuses it
            key = self.construct_object(key_node)
            if key in first:
                line = first[key].start_mark.line + 1
                self._refuse(node, key_node, f"key {key!r} given twice (first on line "
                             f"{line}; YAML keeps only the last)", key)
            first[key] = key_node

    def _refuse(self, node: Node, at: Node, problem: str, key: Any = None) -> None:
        where = Where("", _field_of(self._root, node) if self._root is not None else "")
        if key is not None:
            where = where.at(str(key))
        field = f"field '{where.field}': " if where.field else ""
        raise _Refused(problem=field + problem, problem_mark=at.start_mark)


def load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RecipeError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        line = e.object[:e.start].count(b"\n") + 1
        raise RecipeError(f"{path}:{line}: not UTF-8 (byte 0x{e.object[e.start]:02x})"
                          ) from None
    try:
        return yaml.load(text, Loader=RecipeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        what = "" if isinstance(e, _Refused) else "malformed YAML: "
        raise RecipeError(f"{path}{where}: {what}{problem}") from None


