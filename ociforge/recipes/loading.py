"""Reading recipe files, and saying exactly where one is wrong.

Every recipe error is one line. YAML syntax errors give `FILE:LINE:COL`; every other
error names the field: `FILE: field 'PATH': message`, built by `Where.error` (pydantic's
errors too, through `validate`), so all of them read alike.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import RecipeError

# libyaml's loader when PyYAML was built with it (its wheels are): ~8x faster.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

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


def validate(model: type[M], data: Any, where: Where) -> M:
    """`data` as a `model`, or a RecipeError naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise validation_error(e, where) from None


def load_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as e:
        raise RecipeError(f"{path}: cannot read: {e.strerror}") from None
    try:
        return yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(f"{path}{where}: malformed YAML: {problem}") from None


def suggest(name: str, valid: list[str]) -> str:
    """` (did you mean 'x'?)` for the nearest valid names, or nothing."""
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
