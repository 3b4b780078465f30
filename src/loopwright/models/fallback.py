"""A chain of models: when one fails, the next one answers.

``FallbackModel(primary, secondary, ...)`` sends each turn to ``primary``; if it fails with an
error that another provider may not have (by default: a retryable error that outlasted the
model's own retries, a 5xx server error, an overload, a connection failure or timeout), the
same request goes to the next model. Errors that would fail anywhere (400 bad request, 401
bad key, 403, 404) are raised at once: a fallback would only hide them.

Every switch is announced with a :class:`~loopwright.models.base.RetryNotice`; when the
failed model had already streamed text, the notice says ``discard_partial=True`` and the next
model's answer starts from scratch. Wrap each provider in a
:class:`~loopwright.models.retry.RetryingModel` (models from model strings already are) to
retry a model before falling back from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from loopwright.events import TextDelta
from loopwright.models.base import (
    Model,
    ModelError,
    ModelEvent,
    ModelRequest,
    ModelResponse,
    RetryNotice,
    ThinkingDelta,
)
from loopwright.models.retry import close_stream

__all__ = ["FallbackModel", "should_fall_back"]


def should_fall_back(error: ModelError) -> bool:
    """The default policy: fall back on retryable errors and on server-side failures (5xx,
    529 overloaded), not on errors in the request or the credentials (4xx)."""
    if error.retryable:
        return True
    return error.status_code is not None and error.status_code >= 500


class FallbackModel(Model):
    """Models tried in order for each turn until one answers.

    ``name`` joins the models' names with ``" > "``; ``context_window`` is the smallest
    window, so a conversation fits whichever model answers. ``pricing`` is ``None``: each
    response's ``usage.cost_usd`` is computed with the prices of the model that produced it.
    ``fall_back_on`` decides which errors move on to the next model (default
    :func:`should_fall_back`). ``last_model`` is the model that answered the latest turn.
    """

    def __init__(
        self,
        primary: Model,
        *fallbacks: Model,
        fall_back_on: Callable[[ModelError], bool] = should_fall_back,
    ) -> None:
        if not fallbacks:
            raise ValueError("FallbackModel needs a primary model and at least one fallback")
        self.models: tuple[Model, ...] = (primary, *fallbacks)
        self.fall_back_on = fall_back_on
        self.name = " > ".join(model.name for model in self.models)
        self.pricing = None
        self.last_model: Model | None = None

    @property
    def context_window(self) -> int:
        """The smallest context window of the chain."""
        return min(model.context_window for model in self.models)

    @context_window.setter
    def context_window(self, value: int) -> None:
        raise AttributeError(
            "a FallbackModel's context window is the smallest of its models'; set theirs"
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """The first model's stream; the next model's after a failure that allows it."""
        failures: list[tuple[Model, ModelError]] = []
        for index, model in enumerate(self.models):
            streamed = False
            events = model.stream(request)
            try:
                async for event in events:
                    if isinstance(event, TextDelta | ThinkingDelta):
                        streamed = True
                    elif isinstance(event, RetryNotice) and event.discard_partial:
                        streamed = False
                    elif isinstance(event, ModelResponse):
                        self._price(model, event)
                        self.last_model = model
                    yield event
                return
            except ModelError as exc:
                failures.append((model, exc))
                if index + 1 == len(self.models) or not self.fall_back_on(exc):
                    if len(failures) == 1:
                        raise
                    raise _all_failed(failures) from exc
            finally:
                await close_stream(events)
            error = failures[-1][1]
            following = self.models[index + 1]
            text = f"{model.name} failed ({str(error).rstrip('.')}); switching to {following.name}"
            if streamed:
                text += "; the partial answer so far is discarded and the answer starts over"
            yield RetryNotice(text, index + 2, 0.0, discard_partial=streamed)

    @staticmethod
    def _price(model: Model, response: ModelResponse) -> None:
        usage = response.usage
        if usage.cost_usd == 0.0 and model.pricing is not None:
            usage.cost_usd = model.pricing.cost(usage)

    async def aclose(self) -> None:
        """Close every model of the chain."""
        for model in self.models:
            await model.aclose()


def _all_failed(failures: list[tuple[Model, ModelError]]) -> ModelError:
    """One error that names every model's failure; retryable if the last one was."""
    last = failures[-1][1]
    details = "; ".join(f"{model.name}: {str(error).rstrip('.')}" for model, error in failures)
    return ModelError(
        f"every model failed ({details})",
        retryable=last.retryable,
        status_code=last.status_code,
        retry_after=last.retry_after,
    )
