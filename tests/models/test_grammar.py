"""JSON schema -> GBNF: grammars llama.cpp accepts, whose outputs parse and validate.

The grammars are compiled by llama.cpp itself (``llama_sampler_init_grammar`` on the bundled
model's vocabulary) and drive real sampling with the bundled SmolLM2 model; every output is
parsed and validated with fastjsonschema, the validator the tool registry uses.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import fastjsonschema
import pytest

from loopwright.messages import Message
from loopwright.models.base import ModelRequest
from loopwright.models.grammar import (
    GrammarBuilder,
    GrammarError,
    _range_alternatives,
    schema_to_gbnf,
    tool_call_grammar,
)
from loopwright.tools import tool
from loopwright.tools.files import ReadTool, WriteTool

llama_cpp = pytest.importorskip("llama_cpp", reason="needs the `local` extra")
from loopwright.models.local import (  # noqa: E402
    bundled_model_path,
    bundled_models,
    examples_for,
    render_messages,
)

pytestmark = pytest.mark.skipif(
    "smollm2-135m" not in bundled_models(), reason="needs the bundled SmolLM2 model"
)


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"


@dataclasses.dataclass
class Owner:
    name: str
    team: Literal["core", "web"]


@tool
def schedule(
    title: str,
    priority: Priority,
    minutes: Annotated[int, "How long it takes"],
    owner: Owner,
    tags: list[str],
    due: str | None = None,
    ratio: float = 1.0,
    urgent: bool = False,
) -> str:
    """Put a task on the schedule."""
    return title


BOUNDED = {
    "name": "Resize",
    "description": "Resize an image",
    "input_schema": {
        "type": "object",
        "properties": {
            "width": {"type": "integer", "minimum": 16, "maximum": 4096},
            "height": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 1000},
            "mode": {"anyOf": [{"const": "fit"}, {"const": "fill"}, {"type": "null"}]},
            "label": {"type": "string", "minLength": 2, "maxLength": 8},
            "points": {
                "type": "array",
                "items": {"type": "array", "prefixItems": [{"type": "number"}] * 2},
                "minItems": 1,
                "maxItems": 3,
            },
        },
        "required": ["width", "height", "label", "points"],
        "additionalProperties": False,
    },
}


def tool_schemas() -> list[dict[str, Any]]:
    return [WriteTool("/tmp").schema, ReadTool("/tmp").schema, schedule.schema, BOUNDED]


# --- the grammar text, without a model ---------------------------------------------------


def test_tool_call_grammar_has_one_alternative_per_tool_and_a_text_answer() -> None:
    grammar = tool_call_grammar(tool_schemas())
    turn = re.search(r"^turn ::= (.*)$", grammar, re.M)
    assert turn is not None
    assert turn.group(1).split(" | ") == [
        "Write-call",
        "Read-call",
        "schedule-call",
        "Resize-call",
        "answer",
    ]
    assert r'"\"name\"" ":" ws "\"Write\""' in grammar
    forced = tool_call_grammar(tool_schemas(), allow_text=False, only=["Read"])
    assert re.search(r"^turn ::= Read-call$", forced, re.M)
    assert "answer" not in forced


def test_unknown_forced_tool_and_impossible_schemas_are_errors() -> None:
    with pytest.raises(GrammarError, match="Nope"):
        tool_call_grammar(tool_schemas(), only=["Nope"])
    with pytest.raises(GrammarError, match="does not point"):
        schema_to_gbnf({"$ref": "#/$defs/missing"})
    with pytest.raises(GrammarError, match="minimum above maximum"):
        schema_to_gbnf({"type": "integer", "minimum": 5, "maximum": 1})
    with pytest.raises(GrammarError, match="empty enum"):
        schema_to_gbnf({"enum": []})


def test_unsupported_keywords_are_listed_and_degrade_to_a_permissive_rule() -> None:
    builder = GrammarBuilder()
    rule = builder.schema_rule({"type": "string", "pattern": "(?=a)b", "format": "email"}, "field")
    assert rule == "string"  # any JSON string
    assert builder.ignored == {"pattern", "format"}
    builder.schema_rule({"not": {"type": "null"}}, "other")
    assert "not" in builder.ignored


def _as_regex(alternatives: list[str]) -> re.Pattern[str]:
    """The GBNF digit alternatives of ``_range_alternatives`` as a Python regex."""
    pattern = "|".join(alternatives).replace('"', "").replace(" ", "")
    return re.compile(f"(?:{pattern})")


@pytest.mark.parametrize(
    ("low", "high"),
    [(0, 9), (3, 1234), (1, 10**15 - 1), (16, 4096), (100, 100), (7, 70), (999, 1001), (0, 0)],
)
def test_integer_ranges_match_exactly_the_numbers_in_range(low: int, high: int) -> None:
    regex = _as_regex(_range_alternatives(low, high))
    probes = set(range(0, 1100)) | {low, high, low - 1, high + 1, 4095, 4097, 10**15 - 1}
    for number in sorted(p for p in probes if p >= 0):
        assert bool(regex.fullmatch(str(number))) == (low <= number <= high), number
    assert not regex.fullmatch("007")  # no leading zeros


def test_rule_names_never_clash_with_the_start_rule_or_builtins() -> None:
    schema = {
        "$defs": {"root": {"type": "string"}, "string": {"type": "integer"}},
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/root"}, "b": {"$ref": "#/$defs/string"}},
        "required": ["a", "b"],
    }
    grammar = schema_to_gbnf(schema)
    names = [line.split(" ::= ")[0] for line in grammar.splitlines()]
    assert names.count("root") == 1
    assert len(names) == len(set(names))


def test_recursive_refs_become_recursive_rules() -> None:
    schema = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "value": {"type": "integer"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["value"],
            }
        },
        "$ref": "#/$defs/node",
    }
    grammar = schema_to_gbnf(schema)
    node_rule = re.search(r"^node ::= (\S+)$", grammar, re.M)
    assert node_rule is not None
    assert "node" in re.search(rf"^{node_rule.group(1)}-children ::= (.*)$", grammar, re.M)[1]  # type: ignore[index]


# --- compiled and sampled by llama.cpp ---------------------------------------------------


@pytest.fixture(scope="module")
def llama() -> Iterator[Any]:
    model = llama_cpp.Llama(
        bundled_model_path("smollm2-135m"), n_ctx=1024, n_threads=1, verbose=False
    )
    yield model
    model.close()


def compiles(llama: Any, grammar: str) -> bool:
    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def test_grammars_compile_in_llama_cpp(llama: Any) -> None:
    assert compiles(llama, tool_call_grammar(tool_schemas()))
    assert compiles(llama, tool_call_grammar(tool_schemas(), allow_text=False))
    for schema in tool_schemas():
        assert compiles(llama, schema_to_gbnf(schema["input_schema"])), schema["name"]
    structured = {"type": "object", "properties": {"answer": {"type": "number"}}}
    assert compiles(llama, tool_call_grammar(tool_schemas(), answer_schema=structured))
    assert not compiles(llama, "root ::= (")  # the check can fail


PROMPTS = {
    "Write": "Create notes.txt with the text 'see you at noon'.",
    "Read": "Show me the first 5 lines of report.md.",
    "schedule": "Schedule 'team lunch' for the web team, owner Kim, 45 minutes, high priority.",
    "Resize": "Resize the image to 640 by 480, fill mode, label 'thumb', points (1.5, 2).",
}


def generate(
    llama: Any, prompt: str, grammar: str, seed: int, *, raw: bool = False
) -> tuple[str, bool]:
    """(output, finished): sample with the grammar until the end of turn or 200 tokens."""
    turns = prompt if raw else f"<|im_start|>user\n{prompt}<|im_end|>\n"
    text = f"{turns}<|im_start|>assistant\n"
    tokens = llama.tokenize(text.encode(), add_bos=False, special=True)
    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    llama.set_seed(seed)
    out = b""
    for count, token in enumerate(
        llama.generate(tokens, temp=0.9, grammar=llama_cpp.LlamaGrammar.from_string(grammar))
    ):
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            return out.decode(), True
        out += llama.detokenize([token])
        if count >= 200:
            break
    return out.decode(errors="replace"), False


@pytest.mark.parametrize("name", list(PROMPTS))
def test_constrained_generation_parses_and_validates(llama: Any, name: str) -> None:
    schemas = {s["name"]: s for s in tool_schemas()}
    validate = fastjsonschema.compile(schemas[name]["input_schema"])
    grammar = tool_call_grammar(list(schemas.values()), allow_text=False, only=[name])
    finished = 0
    for seed in range(1, 5):  # temperature 0.9: four different samples
        output, done = generate(llama, PROMPTS[name], grammar, seed)
        if not done:
            continue  # cut off by the token limit: an unfinished call, never a wrong one
        finished += 1
        call = json.loads(output)
        assert set(call) == {"name", "arguments"}
        assert call["name"] == name
        validate(call["arguments"])  # raises if the arguments break the schema
    assert finished >= 3


def test_calls_stay_valid_when_the_model_may_also_answer_in_text(llama: Any) -> None:
    schemas = {s["name"]: s for s in tool_schemas()}
    grammar = tool_call_grammar(list(schemas.values()))
    kinds: dict[str, int] = {"call": 0, "text": 0}
    for seed, prompt in enumerate(PROMPTS.values()):
        rendered = render_messages(
            ModelRequest([Message.user(prompt)], tools=list(schemas.values())),
            examples=examples_for(list(schemas.values()), prompt),
        )
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in rendered)
        output, done = generate(llama, text, grammar, seed, raw=True)
        if not done:
            continue
        if output.startswith("{"):
            call = json.loads(output)
            fastjsonschema.compile(schemas[call["name"]]["input_schema"])(call["arguments"])
            kinds["call"] += 1
        else:
            assert output.strip() == output  # the answer rule allows no leading whitespace
            kinds["text"] += 1
    assert kinds["call"] >= 2
