"""Generator backends behind one interface (see :class:`rag.nodes.Generator`)."""

from rag.generators.transformers import TransformersGenerator

__all__ = ["TransformersGenerator"]
