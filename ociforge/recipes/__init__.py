"""Recipes: the project's YAML, validated by pydantic and resolved into images.

    loading   YAML files, and the one way errors name a file and a field
    models    layers, image declarations (ImageSpec), resolved images (ImageDef)
    matrix    `matrix:` templates expanded over their axes
    features  add-ons that compose onto any image
    project   Project: everything loaded, cross-checked, `resolve(name) -> ImageDef`
"""

from __future__ import annotations

from ..errors import suggest
from .features import CAVEATS_LABEL, FEATURES_LABEL, FeatureCase, FeatureDef, Features
from .loading import Where, load_yaml, validate
from .matrix import MatrixDef
from .models import ImageConfig, ImageDef, ImageSpec, LayerDef
from .project import Project, RecipeFile

__all__ = ["CAVEATS_LABEL", "FEATURES_LABEL", "FeatureCase", "FeatureDef", "Features",
           "ImageConfig", "ImageDef", "ImageSpec", "LayerDef", "MatrixDef", "Project",
           "RecipeFile", "Where", "load_yaml", "suggest", "validate"]
