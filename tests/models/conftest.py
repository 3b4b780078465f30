"""Loopback provider servers as fixtures for every test under tests/models."""

from .anthropic_server import anthropic_server
from .openai_server import openai_server

__all__ = ["anthropic_server", "openai_server"]
