"""Reading a judge's reply: find the JSON object in it, however the model wrapped it.

Judges are asked for one JSON object and often send something near it: the object inside a
Markdown code fence, a sentence before or after it, ``<think>`` blocks, single-quoted strings,
a trailing comma, Python's ``True``/``None``, a score written as ``"85"`` or ``"85/100"``.
:func:`parse_verdict` accepts all of these and returns a :class:`Verdict`; anything it cannot
read raises :class:`JudgeReplyError` whose message says what was wrong, in words the judge can
act on when it is asked again.

The repairs are lexical and only touch what is outside string values (a quote, a comma or a
word inside a string is never changed), so a reply is never "fixed" into a different meaning.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Keys judges use for the list of problems (the design guide's hallucination judge says
#: ``hallucinations``); they are all read into ``issues``.
ISSUE_KEYS = ("issues", "hallucinations", "problems", "errors", "unsupported_claims", "findings")
#: Keys judges use for their explanation; read into ``reasoning``.
REASONING_KEYS = ("reasoning", "explanation", "rationale", "justification", "analysis")

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)```", re.DOTALL)
_THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_SCORE_TEXT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:%|/\s*(\d+(?:\.\d+)?))?\s*$")
_WORDS = {"True": "true", "False": "false", "None": "null"}


class JudgeReplyError(ValueError):
    """The judge's reply is not a usable verdict; the message says why (for the judge)."""


class Verdict(BaseModel):
    """What a judge decided: the strict result every evaluator produces.

    ``score`` is 0-100; ``passed`` the judge's pass/fail; ``issues`` the problems it found
    (empty when none); ``reasoning`` why. ``details`` keeps any other keys the judge returned
    (an evaluator may ask for more, e.g. per-criterion scores).
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    score: int = Field(ge=0, le=100)
    passed: bool
    issues: list[str] = Field(default_factory=list)
    reasoning: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


def verdict_schema(
    *, max_issues: int = 10, max_issue_chars: int = 300, max_chars: int = 2000
) -> dict[str, Any]:
    """The JSON schema of a verdict, sent to judges that support structured output.

    The bounds keep a small model from writing forever: a grammar-constrained local model
    stops where the schema ends, so a repetitive model still closes the object before its
    output limit.
    """
    return {
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 0, "maximum": 100},
            "passed": {"type": "boolean"},
            "issues": {
                "type": "array",
                "items": {"type": "string", "maxLength": max_issue_chars},
                "maxItems": max_issues,
            },
            "reasoning": {"type": "string", "maxLength": max_chars},
        },
        "required": ["score", "passed", "issues", "reasoning"],
        "additionalProperties": False,
    }


def parse_verdict(text: str, *, pass_threshold: int = 70) -> Verdict:
    """The verdict in a judge's reply.

    ``passed`` is the judge's when it gave one, else ``score >= pass_threshold``. Raises
    :class:`JudgeReplyError` when the reply holds no usable verdict.
    """
    return verdict_from_object(extract_json_object(text), pass_threshold=pass_threshold)


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in ``text`` (fenced or bare, repaired where safe)."""
    cleaned = _THINK.sub("", text).strip()
    if not cleaned:
        raise JudgeReplyError("the reply was empty; reply with the JSON object")
    errors: list[tuple[bool, str]] = []  # (looks like an object, what was wrong)
    for candidate in _candidates(cleaned):
        try:
            value = _loads(candidate)
        except ValueError as exc:
            errors.append((candidate.startswith("{"), str(exc)))
            continue
        if isinstance(value, dict):
            return value
        errors.append((False, f"the JSON value is a {type(value).__name__}, not an object"))
    # the most telling error: one from something that looked like an object
    first_error = next((e for is_object, e in errors if is_object), None)
    if first_error is None and "{" in cleaned:
        first_error = errors[0][1] if errors else None
    if first_error is None:
        raise JudgeReplyError(
            "no JSON object was found in the reply; reply with only a JSON object that starts "
            "with '{' and ends with '}'"
        )
    raise JudgeReplyError(f"the JSON in the reply is not valid ({first_error})")


def verdict_from_object(data: Mapping[str, Any], *, pass_threshold: int = 70) -> Verdict:
    """Normalise a judge's JSON object into a :class:`Verdict` (aliases, strings, numbers)."""
    known = {"score", "passed", "pass", *ISSUE_KEYS, *REASONING_KEYS}
    if "score" not in data:
        raise JudgeReplyError(
            "the JSON object has no 'score'; include \"score\": an integer from 0 to 100"
        )
    score = _score(data["score"])
    raw_passed = data.get("passed", data.get("pass"))
    passed = score >= pass_threshold if raw_passed is None else _boolean(raw_passed)
    issues: list[str] = []
    for key in ISSUE_KEYS:
        if key in data:
            issues.extend(_strings(data[key], key))
    reasoning = next((data[k] for k in REASONING_KEYS if k in data), "")
    if not isinstance(reasoning, str):
        reasoning = json.dumps(reasoning, ensure_ascii=False)
    details = {k: v for k, v in data.items() if k not in known}
    return Verdict(
        score=score, passed=passed, issues=issues, reasoning=reasoning.strip(), details=details
    )


# --- the parts -----------------------------------------------------------------------------


def _candidates(text: str) -> Iterator[str]:
    """Places a JSON object may be: fenced blocks (json ones first), the whole text, then
    each balanced ``{...}`` in the text."""
    fences = _FENCE.findall(text)
    for _language, body in sorted(fences, key=lambda f: f[0].lower() not in ("json", "json5")):
        yield body.strip()
    yield text
    for body in (text, *(b for _, b in fences)):
        yield from _balanced_objects(body)


def _balanced_objects(text: str) -> Iterator[str]:
    """Each top-level ``{...}`` span of ``text``, braces inside strings ignored."""
    start = text.find("{")
    while start != -1:
        end = _matching_brace(text, start)
        if end is None:
            return
        yield text[start : end + 1]
        start = text.find("{", end + 1)


def _matching_brace(text: str, start: int) -> int | None:
    depth = 0
    quote: str | None = None
    index = start
    while index < len(text):
        char = text[index]
        if quote is not None:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return None


def _loads(candidate: str) -> Any:
    try:
        return json.loads(candidate)
    except json.JSONDecodeError as exc:
        repaired = _repair(candidate)
        if repaired == candidate:
            raise ValueError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
        try:
            return json.loads(repaired)
        except json.JSONDecodeError:
            raise ValueError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _repair(text: str) -> str:
    """JSON-ish to JSON, outside strings only: single-quoted strings become double-quoted,
    trailing commas go, Python's ``True``/``False``/``None`` become JSON's words."""
    out: list[str] = []
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if char in "\"'":
            end = _string_end(text, index)
            body = text[index + 1 : end]
            if char == "'":
                body = body.replace("\\'", "'").replace('"', '\\"')
            out.append(f'"{body}"')
            index = end + 1
            continue
        if char == ",":
            rest = index + 1
            while rest < length and text[rest].isspace():
                rest += 1
            if rest < length and text[rest] in "}]":
                index += 1
                continue
        if char.isalpha():
            word_end = index
            while word_end < length and (text[word_end].isalnum() or text[word_end] == "_"):
                word_end += 1
            word = text[index:word_end]
            out.append(_WORDS.get(word, word))
            index = word_end
            continue
        out.append(char)
        index += 1
    return "".join(out)


def _string_end(text: str, start: int) -> int:
    quote = text[start]
    index = start + 1
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == quote:
            return index
        index += 1
    return len(text) - 1


def _score(value: Any) -> int:
    number: float
    if isinstance(value, bool):
        raise JudgeReplyError(f"'score' must be a number from 0 to 100, got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and (match := _SCORE_TEXT.match(value)):
        number = float(match.group(1))
        if match.group(2):  # "8/10": scale to 0-100
            scale = float(match.group(2))
            if scale <= 0:
                raise JudgeReplyError(f"'score' must be a number from 0 to 100, got {value!r}")
            number = number * 100 / scale
    else:
        raise JudgeReplyError(f"'score' must be a number from 0 to 100, got {value!r}")
    if math.isnan(number) or not 0 <= number <= 100:
        raise JudgeReplyError(f"'score' must be a number from 0 to 100, got {value!r}")
    return round(number)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "yes", "pass", "passed", "1"):
            return True
        if word in ("false", "no", "fail", "failed", "0"):
            return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise JudgeReplyError(f"'passed' must be true or false, got {value!r}")


def _strings(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        items: list[str] = []
        for item in value:
            if isinstance(item, str):
                if item.strip():
                    items.append(item.strip())
            elif isinstance(item, dict):
                text = next(
                    (item[k] for k in ("issue", "claim", "description", "message") if k in item),
                    None,
                )
                items.append(text if isinstance(text, str) else json.dumps(item))
            else:
                items.append(json.dumps(item))
        return items
    raise JudgeReplyError(f"'{key}' must be a list of strings, got {type(value).__name__}")


__all__ = [
    "ISSUE_KEYS",
    "REASONING_KEYS",
    "JudgeReplyError",
    "Verdict",
    "extract_json_object",
    "parse_verdict",
    "verdict_from_object",
    "verdict_schema",
]
