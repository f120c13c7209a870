"""The one pydantic base for everything ociforge reads from YAML.

Recipes, layer sources and check declarations all refuse unknown fields (a typo is
an error, not a silently ignored key) and are immutable once validated. This module
imports nothing from ociforge, so any of them can use it without an import cycle.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Spec(BaseModel):
    """A validated, frozen declaration; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)
