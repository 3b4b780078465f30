"""Embedding functions: turn texts into vectors for the memory store and workspace search.

An embedding function is any callable ``f(texts: list[str]) -> list[list[float]]``, sync or
async (returning an awaitable), one vector per text, all of the same size (a numpy array of
shape ``(len(texts), size)`` is fine too, so ``SentenceTransformer(...).encode`` works as
is). Sync functions run in a worker thread, so a slow one never stalls the event loop. Give
it a ``name`` attribute to identify the model: a store remembers which function made its
vectors, and when the name (or the vector size) changes, its vectors are made again with the
new function, since vectors of two models cannot be compared.

Two real providers come with loopwright:

- :class:`OpenAIEmbeddings`: the ``/v1/embeddings`` endpoint of OpenAI or any compatible
  server (Ollama, vLLM, llama.cpp's server, LM Studio) through the official ``openai`` SDK;
- :class:`LlamaCppEmbeddings`: a GGUF model run in this process by llama-cpp-python in
  embedding mode; by default the bundled SmolLM2 chat model (weak embeddings, but offline
  and free; point it at a real embedding model's GGUF for good ones).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import openai
    from llama_cpp import Llama

EmbeddingFunction: TypeAlias = Callable[
    [list[str]], "list[list[float]] | Awaitable[list[list[float]]]"
]

_OPENAI_HINT = "install the `loopwright[openai]` extra (pip install 'loopwright[openai]')"
_LOCAL_HINT = "install the `loopwright[local]` extra (pip install 'loopwright[local]')"
#: Sent as the API key to servers that need none (the SDK insists on one).
PLACEHOLDER_API_KEY = "not-needed"


class EmbeddingError(RuntimeError):
    """An embedding function failed or answered something that is not one vector per text."""


def embedder_name(function: EmbeddingFunction) -> str:
    """What identifies an embedding function's vectors: its ``name`` attribute if it has
    one, else its qualified name (``module.function`` or the class of a callable object)."""
    name = getattr(function, "name", None)
    if isinstance(name, str) and name:
        return name
    target: Any = function
    if not (inspect.isfunction(function) or inspect.ismethod(function)):
        target = type(function)
    module = getattr(target, "__module__", "") or ""
    qualname = getattr(target, "__qualname__", None) or repr(target)
    return f"{module}.{qualname}" if module else str(qualname)


async def embed(function: EmbeddingFunction, texts: Sequence[str]) -> list[list[float]]:
    """Call ``function`` on ``texts`` (in a worker thread if it is sync) and check its
    answer: one finite vector per text, all of one size."""
    batch = list(texts)
    if not batch:
        return []
    try:
        if _is_async(function):
            result: Any = function(batch)
        else:
            result = await asyncio.to_thread(function, batch)
        if inspect.isawaitable(result):
            result = await result
    except EmbeddingError:
        raise
    except Exception as exc:
        raise EmbeddingError(
            f"the embedding function {embedder_name(function)} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return _checked(result, len(batch), function)


def _is_async(function: object) -> bool:
    call = getattr(type(function), "__call__", None)  # noqa: B004  # the method, not callable()
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)


def _checked(result: Any, count: int, function: EmbeddingFunction) -> list[list[float]]:
    name = embedder_name(function)
    if hasattr(result, "tolist"):  # a numpy array (sentence-transformers and the like)
        result = result.tolist()
    if not isinstance(result, Sequence) or isinstance(result, str | bytes):
        raise EmbeddingError(
            f"the embedding function {name} returned {type(result).__name__}; it must "
            "return a list with one list of floats per text."
        )
    if len(result) != count:
        raise EmbeddingError(
            f"the embedding function {name} returned {len(result)} vectors for {count} "
            "texts; it must return one vector per text, in order."
        )
    vectors: list[list[float]] = []
    size: int | None = None
    for vector in result:
        if hasattr(vector, "tolist"):
            vector = vector.tolist()
        try:
            floats = [float(value) for value in vector]
        except (TypeError, ValueError):
            raise EmbeddingError(
                f"the embedding function {name} returned a vector that is not a list of numbers."
            ) from None
        if size is None:
            size = len(floats)
            if size == 0:
                raise EmbeddingError(f"the embedding function {name} returned empty vectors.")
        elif len(floats) != size:
            raise EmbeddingError(
                f"the embedding function {name} returned vectors of different sizes "
                f"({size} and {len(floats)}); all vectors must have the same size."
            )
        if not math.isfinite(math.fsum(floats)):
            raise EmbeddingError(f"the embedding function {name} returned NaN or infinity.")
        vectors.append(floats)
    return vectors


def mean_pooled(vectors: Sequence[Sequence[float]]) -> list[float]:
    """The element-wise mean of token vectors, scaled to unit length: what llama.cpp's
    ``mean`` pooling gives for a model whose output is one vector per token."""
    if not vectors:
        raise EmbeddingError("cannot pool an empty list of token vectors.")
    size = len(vectors[0])
    sums = [0.0] * size
    for vector in vectors:
        for index, value in enumerate(vector):
            sums[index] += value
    return _unit([value / len(vectors) for value in sums])


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(math.fsum(value * value for value in vector))
    return [value / norm for value in vector] if norm > 0 else vector


class OpenAIEmbeddings:
    """Embeddings from OpenAI's ``/v1/embeddings`` or any OpenAI-compatible server.

    ``base_url`` points at a compatible server (``http://127.0.0.1:11434/v1`` for Ollama,
    vLLM's or llama.cpp's ``/v1``); default api.openai.com, or ``OPENAI_BASE_URL`` if set.
    ``api_key`` defaults to ``OPENAI_API_KEY``, needed only for api.openai.com.
    ``dimensions`` asks models that support it (``text-embedding-3-*``) for shorter vectors.
    Texts are sent ``batch_size`` at a time.

    llama.cpp's server answers one vector per *token* for models with no pooling of their
    own (chat models); such answers are mean-pooled here, as ``--pooling mean`` would do
    (llama-cpp-python's server gets the token vectors of a request's second and later texts
    wrong, so once it answers per token, texts are sent one per request).
    """

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 256,
        timeout: float = 60.0,
        max_retries: int = 2,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        try:
            import openai  # noqa: F401  # checked here so a missing SDK fails at set-up
        except ImportError:
            raise EmbeddingError(
                f"OpenAIEmbeddings needs the openai package; {_OPENAI_HINT}."
            ) from None
        if not model or not model.strip():
            raise EmbeddingError(
                "OpenAIEmbeddings needs a model name, for example "
                "OpenAIEmbeddings('text-embedding-3-small')."
            )
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.base_url = base_url.rstrip("/") if base_url else None
        official = self.base_url is None or "//api.openai.com" in self.base_url
        key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if key is None:
            if official:
                raise EmbeddingError(
                    "OPENAI_API_KEY is not set: set it to your OpenAI API key (or pass "
                    "api_key=..., or base_url=... for an OpenAI-compatible server)."
                )
            key = PLACEHOLDER_API_KEY
        self.model = model.strip()
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.timeout = timeout
        self.max_retries = max_retries
        self.default_headers = dict(default_headers or {})
        #: identifies this function's vectors (see :func:`embedder_name`)
        self.name = f"openai:{self.model}" + (f":{dimensions}" if dimensions else "")
        self._key = key
        self._one_per_request = False
        self._where = "OpenAI" if official else f"the OpenAI-compatible server at {base_url}"
        # one client per event loop: an HTTP connection pool belongs to the loop it was
        # opened in, and `asyncio.run` (as in Agent.run_sync) makes a new loop each time
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI]
        self._clients = weakref.WeakKeyDictionary()

    def _client(self) -> openai.AsyncOpenAI:
        import openai

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = openai.AsyncOpenAI(
                api_key=self._key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=self.max_retries,
                default_headers=self.default_headers or None,
            )
            self._clients[loop] = client
        return client

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        size = 1 if self._one_per_request else self.batch_size
        for start in range(0, len(texts), size):
            # an empty input is refused by the API; a space embeds as "nothing"
            batch = [text if text.strip() else " " for text in texts[start:][:size]]
            answer, per_token = await self._request(batch)
            if per_token and len(batch) > 1:
                # llama-cpp-python's server slices the token vectors of all but the first
                # text of a request wrongly: ask again one text at a time, from now on
                self._one_per_request = True
                answer = []
                for text in batch:
                    answer += (await self._request([text]))[0]
            vectors += answer
        return vectors

    async def _request(self, batch: list[str]) -> tuple[list[list[float]], bool]:
        """One request: the vectors, and whether the server answered per token."""
        import openai

        options: dict[str, Any] = {"dimensions": self.dimensions} if self.dimensions else {}
        try:
            response = await self._client().embeddings.create(
                model=self.model, input=batch, encoding_format="float", **options
            )
        except openai.APIError as exc:
            raise self._error(exc) from exc
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(batch):
            raise EmbeddingError(
                f"{self._where} returned {len(data)} embeddings for {len(batch)} texts."
            )
        vectors: list[list[float]] = []
        per_token = False
        for item in data:
            vector: Any = item.embedding
            if vector and isinstance(vector[0], list):  # one vector per token
                vector = mean_pooled(vector)
                per_token = True
            vectors.append(vector)
        return vectors, per_token

    def _error(self, exc: Exception) -> EmbeddingError:
        import openai

        where = self._where
        if isinstance(exc, openai.APITimeoutError):
            return EmbeddingError(
                f"{where} did not answer within {self.timeout:g}s; try again, or raise "
                "OpenAIEmbeddings(timeout=...)."
            )
        if isinstance(exc, openai.APIConnectionError):
            return EmbeddingError(
                f"could not reach {where}; check that it is running and that base_url is "
                "right, then try again."
            )
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            detail = getattr(exc, "message", "") or str(exc)
            if status == 401:
                return EmbeddingError(
                    f"{where} rejected the API key (401); set OPENAI_API_KEY (or api_key=...) "
                    "to a valid key."
                )
            if status == 404:
                return EmbeddingError(
                    f"{where} does not know the embedding model {self.model!r} (404: "
                    f"{detail}); check the model name and base_url."
                )
            return EmbeddingError(f"{where} refused the embeddings request ({status}: {detail}).")
        return EmbeddingError(f"{where} failed to embed: {exc}")

    async def aclose(self) -> None:
        """Close the HTTP client of the running loop (the others go with their loops)."""
        clients = list(self._clients.items())
        self._clients.clear()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for client_loop, client in clients:
            if client_loop is loop:
                await client.close()


class LlamaCppEmbeddings:
    """Embeddings from a GGUF model run in this process by llama-cpp-python.

    ``model_path`` defaults to the bundled SmolLM2 model (see
    :func:`loopwright.models.local.bundled_model_path`). A model with a pooling type of its
    own (a real embedding model) is used as it is; for one without (a chat model), the token
    vectors are averaged. Vectors are scaled to unit length. Texts longer than ``n_ctx``
    tokens are cut. The model is loaded on first use, in the one worker thread that runs it
    (a llama.cpp context is not thread-safe).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 512,
        n_threads: int | None = None,
    ) -> None:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise EmbeddingError(
                f"LlamaCppEmbeddings needs llama-cpp-python; {_LOCAL_HINT}."
            ) from None
        if model_path is None:
            from loopwright.models.base import ModelError
            from loopwright.models.local import bundled_model_path

            try:
                model_path = bundled_model_path()
            except ModelError as exc:
                raise EmbeddingError(str(exc)) from exc
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise EmbeddingError(f"No GGUF file at {path}; give the path of a .gguf model file.")
        self.model_path = str(path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, min(4, (os.cpu_count() or 2) // 2))
        self.name = f"llama.cpp:{path.name}"
        self._llama: Llama | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="loopwright-embed")
        self._closed = False

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        if self._closed:
            raise EmbeddingError("this LlamaCppEmbeddings is closed; make a new one.")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self.embed_sync, texts)

    def embed_sync(self, texts: list[str]) -> list[list[float]]:
        """Embed in the calling thread (used by the worker; call it from one thread only)."""
        import llama_cpp

        llama = self._llama
        if llama is None:
            llama = self._llama = llama_cpp.Llama(
                self.model_path,
                embedding=True,
                n_ctx=self.n_ctx,
                n_batch=self.n_ctx,
                n_ubatch=self.n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                verbose=False,
            )
        pooling: Any = llama.pooling_type()  # an int, whatever its annotation says
        per_token = pooling == llama_cpp.LLAMA_POOLING_TYPE_NONE
        vectors: list[list[float]] = []
        for text in texts:  # one at a time: each text gets the whole context
            output: Any = llama.embed(text or " ", normalize=not per_token, truncate=True)
            vectors.append(mean_pooled(output) if per_token else list(output))
        return vectors

    def close(self) -> None:
        """Free the model and stop the worker thread."""
        if self._closed:
            return
        self._closed = True
        self._worker.submit(self._free).result()
        self._worker.shutdown(wait=True)

    def _free(self) -> None:
        llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)
