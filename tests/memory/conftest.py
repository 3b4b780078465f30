"""Shared helpers: a small, deterministic embedding function for testing the vector paths.

``ConceptEmbedder`` is a real embedding function (texts in, vectors out) whose notion of
meaning is a fixed table of synonyms: words of one concept land in the same dimension, so
"cat" and "pet" are close and "cat" and "invoice" are not. It exercises the stores' vector
machinery (sqlite-vec tables, fusion, backfill, deletion) with results a test can predict;
the real providers are tested in test_embeddings.py.
"""

from __future__ import annotations

import math
import re
import threading
import zlib

import pytest

CONCEPTS = {
    "pet": ("pet", "cat", "cats", "kitten", "dog", "dogs", "puppy", "parrot", "animal"),
    "drink": ("drink", "drinks", "tea", "coffee", "espresso", "beverage", "cup"),
    "money": ("invoice", "bill", "payment", "owe", "due", "budget", "dollars"),
    "deploy": ("deploy", "deploys", "release", "ship", "rollout", "ships"),
}
_CONCEPT_OF = {word: concept for concept, members in CONCEPTS.items() for word in members}


class ConceptEmbedder:
    """Bag-of-concepts vectors of ``dimensions`` floats, unit length."""

    def __init__(self, dimensions: int = 32, name: str = "test:concepts") -> None:
        self.dimensions = dimensions
        self.name = name
        self.calls = 0
        self.texts: list[str] = []
        self.threads: set[int] = set()
        self.fail = False

    def __call__(self, texts: list[str]) -> list[list[float]]:
        self.threads.add(threading.get_ident())
        if self.fail:
            raise ConnectionError("embedding server unreachable")
        self.calls += 1
        self.texts += texts
        return [self.vector(text) for text in texts]

    def vector(self, text: str) -> list[float]:
        vector = [0.0] * self.dimensions
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            concept = _CONCEPT_OF.get(word, word)
            weight = 3.0 if concept in CONCEPTS else 1.0
            vector[zlib.crc32(concept.encode()) % self.dimensions] += weight
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]


class AsyncConceptEmbedder(ConceptEmbedder):
    """The same vectors from an ``async`` function."""

    async def __call__(self, texts: list[str]) -> list[list[float]]:  # type: ignore[override]
        return super().__call__(texts)


@pytest.fixture
def embedder() -> ConceptEmbedder:
    return ConceptEmbedder()
