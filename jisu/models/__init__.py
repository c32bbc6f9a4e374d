"""Known models, where to fetch them, and the verified cache they are kept in."""

from jisu.models.registry import KNOWN_MODELS, lookup
from jisu.types import ModelError
from jisu.models.resolve import ResolvedModel, resolve_model

__all__ = ["KNOWN_MODELS", "ModelError", "ResolvedModel", "lookup", "resolve_model"]
