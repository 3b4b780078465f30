"""Long-term memory and retrieval: the memory store behind the ``Memory`` tool, the workspace
index behind ``Search``, and the embedding functions for vector search.

- :class:`MemoryBank`: memories scoped by user or project, in SQLite with FTS5 ranking, and
  sqlite-vec vectors with hybrid ranking when given an embedding function;
- :class:`DocumentIndex`: ranked passages of a workspace's text files;
- :class:`OpenAIEmbeddings` (OpenAI or any compatible server) and :class:`LlamaCppEmbeddings`
  (a local GGUF model), or any ``f(texts) -> vectors`` function, sync or async.
"""

from loopwright.memory.documents import DocumentIndex, IndexStats, Passage, split_passages
from loopwright.memory.embeddings import (
    EmbeddingError,
    EmbeddingFunction,
    LlamaCppEmbeddings,
    OpenAIEmbeddings,
    embed,
    embedder_name,
)
from loopwright.memory.store import (
    DEFAULT_SCOPE,
    Memory,
    MemoryBank,
    RecallHit,
    Remembered,
    default_memory_path,
)
from loopwright.memory.vectors import VectorSearchUnavailable, sqlite_vec_available

__all__ = [
    "DEFAULT_SCOPE",
    "DocumentIndex",
    "EmbeddingError",
    "EmbeddingFunction",
    "IndexStats",
    "LlamaCppEmbeddings",
    "Memory",
    "MemoryBank",
    "OpenAIEmbeddings",
    "Passage",
    "RecallHit",
    "Remembered",
    "VectorSearchUnavailable",
    "default_memory_path",
    "embed",
    "embedder_name",
    "split_passages",
    "sqlite_vec_available",
]
