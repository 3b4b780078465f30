"""Model providers behind one interface, and ``resolve_model`` for model strings."""

from __future__ import annotations

from loopwright.models.base import (
    Model,
    ModelError,
    ModelEvent,
    ModelRequest,
    ModelResponse,
    Pricing,
    ThinkingDelta,
)

__all__ = [
    "Model",
    "ModelError",
    "ModelEvent",
    "ModelRequest",
    "ModelResponse",
    "Pricing",
    "ThinkingDelta",
    "available_models",
    "resolve_model",
]


def available_models() -> list[str]:
    """The model strings this version understands."""
    return ["scripted"]


def resolve_model(spec: Model | str | None) -> Model:
    """Turn a model string (or a ready :class:`Model`) into a model.

    ``scripted`` is the built-in demo script (no LLM: it records the task in a file, reads it
    back and reports); pass a :class:`~loopwright.models.scripted.ScriptedModel` for your own
    script.
    """
    if isinstance(spec, Model):
        return spec
    if spec is None:
        raise ModelError(
            f"no model given; supported model strings: {', '.join(available_models())}"
        )
    name = spec.strip()
    if name in ("scripted", "scripted:demo", "demo"):
        from loopwright.models.demo import demo_model

        return demo_model()
    raise ModelError(
        f"unknown model {spec!r}; supported model strings: {', '.join(available_models())}"
    )
