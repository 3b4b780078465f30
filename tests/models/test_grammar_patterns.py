"""Tool call grammars that allow only what the tools accept: ``pattern``, ``format`` and
length bounds of strings become GBNF, and the healthcare tools' schemas say what they take.

An earlier hunt sampled the healthcare agent's tools at temperature 1.2 and got calls the
grammar allowed and the tools refused (``"dataset_name": "siusedop.csv"``, ``"-"``, ``"}, "``
and ``TodoWrite {}``), on which a tiny model looped. Acceptance is decided by llama.cpp's own
grammar sampler (on the bundled model's vocabulary): a text is accepted when every token of
it, and then the end of the turn, survives the grammar. What a pattern accepts is checked
against fastjsonschema, the validator the tool registry uses.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from loopwright import MemoryStore
from loopwright.healthcare.cohort import _NAME, DefineCohortTool, _date
from loopwright.healthcare.cohort import INPUT_SCHEMA as COHORT_SCHEMA
from loopwright.healthcare.data import build_database
from loopwright.models.grammar import (
    FORMAT_PATTERNS,
    GrammarBuilder,
    tool_call_grammar,
)
from loopwright.models.scripted import ScriptedModel
from loopwright.sql import DuckDBBackend
from loopwright.tools.registry import ToolRegistry
from loopwright.tools.sql import DATASET_NAME, SQLTool, dataset_name_problem
from loopwright.tools.todo import TodoWriteTool

llama_cpp = pytest.importorskip("llama_cpp", reason="needs the `local` extra")
from loopwright.models.local import bundled_model_path, bundled_models  # noqa: E402

pytestmark = pytest.mark.skipif(
    "smollm2-135m" not in bundled_models(), reason="needs the bundled SmolLM2 model"
)


class Grammars:
    """llama.cpp's grammar parser and sampler on the SmolLM2 vocabulary (no weights)."""

    def __init__(self) -> None:
        self.llama = llama_cpp.Llama(
            bundled_model_path("smollm2-135m"), vocab_only=True, verbose=False
        )
        self.vocab = llama_cpp.llama_model_get_vocab(self.llama.model)
        self.eos = llama_cpp.llama_vocab_eos(self.vocab)

    def compiles(self, grammar: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
        if not sampler:
            return False
        llama_cpp.llama_sampler_free(sampler)
        return True

    def accepts(self, grammar: str, text: str) -> bool:
        """Whether llama.cpp lets a model write ``text`` and then end its turn."""
        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
        assert sampler, "the grammar does not compile"
        try:
            tokens = self.llama.tokenize(text.encode(), add_bos=False, special=False)
            for token in [*tokens, self.eos]:
                data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0, 0))
                candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
                llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
                if data[0].logit == float("-inf"):
                    return False
                if token != self.eos:
                    llama_cpp.llama_sampler_accept(sampler, token)
            return True
        finally:
            llama_cpp.llama_sampler_free(sampler)


@pytest.fixture(scope="module")
def gbnf() -> Iterator[Grammars]:
    grammars = Grammars()
    yield grammars
    grammars.llama.close()


def string_schema(pattern: str | None = None, **more: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", **more}
    if pattern is not None:
        schema["pattern"] = pattern
    return schema


def translated(schema: dict[str, Any]) -> tuple[str, GrammarBuilder]:
    builder = GrammarBuilder(schema)
    rule = builder.schema_rule(schema, "value")
    return builder.render(rule), builder


# --- patterns: translated, compiled, and accepting exactly their strings ------------------

PATTERNS: list[tuple[str, list[str], list[str]]] = [
    (  # the SQL tool's dataset_name (also checked with its maxLength below)
        DATASET_NAME.pattern.join("^$"),
        ["humira_ca_top10", "9lives", "Q3-2024_summary", "_x"],
        ["siusedop.csv", "-", "}, ", "../x", "", "a b", "-x", "é", "x\n"],
    ),
    ('^a"b\\\\c$', ['a"b\\c'], ["a\\b\\c", 'a"bc', 'a"b\\\\c']),
    ('^[^"\\\\]*$', ["plain text", "", "ünïcode 中"], ['a"b', "a\\b"]),
    ('^["\\\\]+$', ['"', "\\", '"\\"'], ["a", ""]),
    ("^.{1,3}$", ["\t", "a\x01b", '"', "\\", "é中"], ["\n", "abcd", ""]),
    ("^(cat|dog)s?$|^bird$", ["cat", "dogs", "bird"], ["cats!", "birds", "cow", "xbird"]),
    ("[0-9]{3}", ["ab123cd", "123", "0000"], ["12a3", "", "12"]),
    ("^\\d{3}-\\d{4}$", ["555-1234"], ["555-123", "5551234", "555-12345"]),
    ("^[\u00e9\u4e2d-\u4e2f]+$", ["é中", "中丮"], ["e", "é!", ""]),
    ("^\\S+$", ["héllo", "a.b"], ["a b", "a\u00a0b", "a\tb", ""]),
    ("^\\w+$", ["snake_case9"], ["kebab-case", ""]),
    ("^x{2,}$", ["xx", "xxxxxx"], ["x", "", "xxy"]),
    ("^(?P<year>[0-9]{4})(?:-(?P<month>[0-9]{2}))?$", ["2024", "2024-05"], ["2024-5", "24"]),
    ("^\\.\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|\\^\\$\\/-$", [".*+?()[]{}|^$/-"], ["a*+?()[]{}|^$/-"]),
    ("^[a-c-]$|^[-z]$", ["a", "c", "-", "z"], ["d", "", "--"]),
    ("^\\x41\\u0042[\\x43-\\u0045]$", ["ABC", "ABE"], ["ABF", "AB"]),
    ("^a+?b$", ["ab", "aaab"], ["b", "aba"]),
    ("^(a|)b$", ["ab", "b"], ["aab", "a"]),
    ("^a(?:){1,3}(|b){2}$", ["a", "ab", "abb"], ["abbb", "b"]),  # repeated emptiness
    ("^$", [""], ["a", " "]),
    ("^[\\x01\\n\\t]+$", ["\x01\n\t"], ["a", " "]),
    ("^(?:ab|cd){2,3}$", ["abcd", "cdcdab"], ["ab", "abcdabcd", "abc"]),
    ("^id-", ["id-1", "id-"], ["xid-1", "id"]),
    ("\\.csv$", ["a.csv", ".csv"], ["a.csvx", "acsv"]),
]


@pytest.mark.parametrize(("pattern", "good", "bad"), PATTERNS)
def test_a_pattern_becomes_a_grammar_of_exactly_its_strings(
    gbnf: Grammars, pattern: str, good: list[str], bad: list[str]
) -> None:
    """Old: the pattern was ignored (the rule was any string), so every "bad" text passed."""
    schema = string_schema(pattern)
    grammar, builder = translated(schema)
    assert builder.ignored == set()  # translated, not dropped
    assert gbnf.compiles(grammar)
    validate = fastjsonschema.compile(schema)
    for text in good + bad:
        try:
            validate(text)
            valid = True
        except fastjsonschema.JsonSchemaException:
            valid = False
        assert valid == (text in good), f"the sample {text!r} is misfiled"
        written = json.dumps(text, ensure_ascii=False)  # as a model writes it: \" \\ \n \u0001
        assert gbnf.accepts(grammar, written) == valid, f"{pattern!r} on {written}"


@pytest.mark.parametrize(
    ("pattern", "text"),
    [("^.$", "\r"), ("^.$", "\u2028"), ("^\\d$", "\u0663"), ("^\\w$", "ü"), ("^\\D$", "ü")],
)
def test_where_python_and_ecma_262_differ_only_what_both_take_is_written(
    gbnf: Grammars, pattern: str, text: str
) -> None:
    """Python's ``re`` (the validator) takes these, JSON Schema's ECMA-262 does not: the
    grammar keeps to what both accept, so another validator would not refuse the call."""
    assert re.search(pattern, text)
    grammar, builder = translated(string_schema(pattern))
    assert builder.ignored == set()
    assert not gbnf.accepts(grammar, json.dumps(text, ensure_ascii=False))


def test_characters_are_written_as_json_escapes_only(gbnf: Grammars) -> None:
    """A pattern allowing quotes, backslashes and control characters lets the model write
    them escaped, never raw (which would end the string or break the JSON)."""
    grammar, _ = translated(string_schema('^["\\\\\\x01\\n]+$'))
    assert gbnf.accepts(grammar, '"\\"\\\\\\u0001\\n"')
    assert gbnf.accepts(grammar, '"\\u000a"')  # \n spelled the long way is JSON too
    assert not gbnf.accepts(grammar, '"""')  # a bare quote
    assert not gbnf.accepts(grammar, '"\\"')  # a backslash escaping the closing quote
    assert not gbnf.accepts(grammar, '"\n"')  # a raw line break
    assert not gbnf.accepts(grammar, '"\x01"')


UNTRANSLATABLE = [
    "(?=a)b",  # lookahead
    "(a)\\1",  # backreference
    "\\bword\\b",  # word boundary
    "(?i)abc",  # flags
    "a{,3}",  # a count to Python, text to ECMA-262
    "[[:alpha:]]",
    "[]a]",
    "\\p{L}",
    "a**",
    "(",
    "(a|b",
    "[a-",
    "x{2000}",
    "(a*)*",  # an unbounded repetition of what can be empty (llama.cpp refuses it)
    "(a|)+",
    "(?:)*",
    "^a|b^",
    "^a$b",
    "[^\\s\\S]",  # matches nothing
    "\\ud800",  # a lone surrogate
    "a\\",
]


@pytest.mark.parametrize("pattern", UNTRANSLATABLE)
def test_a_pattern_outside_the_subset_leaves_the_string_unconstrained(
    gbnf: Grammars, pattern: str
) -> None:
    grammar, builder = translated(string_schema(pattern))
    assert "pattern" in builder.ignored
    assert re.search(r"^root ::= string$", grammar, re.M)
    assert gbnf.compiles(grammar)
    assert gbnf.accepts(grammar, json.dumps("anything at all"))


def test_the_lengths_go_with_the_pattern_where_one_repetition_varies(gbnf: Grammars) -> None:
    grammar, builder = translated(string_schema("^[a-z]+$", minLength=3, maxLength=5))
    assert builder.ignored == set()
    for text, valid in [("ab", False), ("abc", True), ("abcde", True), ("abcdef", False)]:
        assert gbnf.accepts(grammar, json.dumps(text)) == valid, text
    prefix, _ = translated(string_schema("^id-", maxLength=5))  # "id-" then any 0-2 chars
    assert gbnf.accepts(prefix, '"id-\\"x"')
    assert not gbnf.accepts(prefix, '"id-123"')
    impossible, builder = translated(string_schema("^[a-z]{6}$", maxLength=5))
    assert "pattern" in builder.ignored  # no string fits: left to validation
    assert gbnf.compiles(impossible)
    # two varying parts: the pattern is kept, the length is not enforced (and said so)
    loose, builder = translated(string_schema("^[a-z]*-[a-z]*$", maxLength=3))
    assert builder.ignored == {"minLength/maxLength"}
    assert gbnf.accepts(loose, '"ab-cd"')
    assert not gbnf.accepts(loose, '"ab_cd"')


def test_impossible_or_huge_lengths_never_make_a_grammar_llama_cpp_refuses(
    gbnf: Grammars,
) -> None:
    """Old: ``minLength`` 5 with ``maxLength`` 2 became ``char{5,2}``."""
    backwards, builder = translated(string_schema(minLength=5, maxLength=2))
    assert gbnf.compiles(backwards)
    assert builder.ignored == {"minLength/maxLength"}
    huge, builder = translated(string_schema(maxLength=1_000_000))
    assert gbnf.compiles(huge)
    assert builder.ignored == {"maxLength"}
    counted, _ = translated(string_schema("^a{3,5000}$"))
    assert gbnf.compiles(counted)
    assert gbnf.accepts(counted, json.dumps("a" * 1200))
    assert not gbnf.accepts(counted, '"aa"')


def test_formats_become_grammars_that_the_validator_agrees_with(gbnf: Grammars) -> None:
    """Old: ``format`` was ignored; DefineCohort's dates could be anything."""
    date, builder = translated(string_schema(format="date"))
    assert builder.ignored == set()
    assert gbnf.compiles(date)
    validate = fastjsonschema.compile(string_schema(format="date"))
    day = dt.date(2023, 1, 1)
    samples = ["2023-02-29", "2024-02-30", "2100-02-29", "2000-02-29", "2023-04-31"]
    samples += ["2023-13-01", "2023-00-10", "2024-1-05", "20240105", "", "2024-01-05T00:00"]
    while day.year < 2025:
        samples.append(day.isoformat())
        day += dt.timedelta(days=9)
    for text in samples:
        try:
            validate(text)
            valid = True
        except fastjsonschema.JsonSchemaException:
            valid = False
        assert gbnf.accepts(date, json.dumps(text)) == valid, text
    for fmt, good, bad in [
        ("date-time", "2024-02-29T23:59:01.5+05:30", "2024-02-29 23:59:01Z"),
        ("time", "08:30:00Z", "8:30"),
        ("uuid", "123e4567-e89b-12d3-a456-426614174000", "123e4567e89b12d3a456426614174000"),
        ("ipv4", "192.168.0.255", "192.168.0.256"),
    ]:
        grammar, builder = translated(string_schema(format=fmt))
        assert builder.ignored == set(), fmt
        assert gbnf.accepts(grammar, json.dumps(good)), fmt
        assert not gbnf.accepts(grammar, json.dumps(bad)), fmt
        assert re.fullmatch(FORMAT_PATTERNS[fmt][1:-1], good)
    _, builder = translated(string_schema(format="email"))  # lookbehind: not translated
    assert builder.ignored == {"format"}


# --- the healthcare tools ------------------------------------------------------------------


@pytest.fixture(scope="module")
def claims_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("claims") / "claims.duckdb"
    return build_database(path, rx_claims=5_000, seed=7)


@pytest.fixture
async def healthcare_tools(claims_db: Path) -> AsyncIterator[list[dict[str, Any]]]:
    from loopwright.healthcare.agent import healthcare_agent

    agent = healthcare_agent(ScriptedModel(["ok"]), database=claims_db, store=MemoryStore())
    registry = agent.registry_for(agent.new_session())
    try:
        schemas = []
        for name in registry.names:
            tool = registry.get(name)
            assert tool is not None
            schemas.append(tool.schema)
        yield schemas
    finally:
        await registry.aclose()
        await agent.aclose()


def sql_call(dataset_name: str) -> str:
    arguments = {"sql": "SELECT 1", "dataset_name": dataset_name, "description": "x"}
    return json.dumps({"name": "SQL", "arguments": arguments}, ensure_ascii=False)


async def test_the_healthcare_tools_grammar_allows_only_calls_the_tools_take(
    gbnf: Grammars, healthcare_tools: list[dict[str, Any]]
) -> None:
    """Old: dataset_name, the cohort's name and dates were any string and TodoWrite took
    ``{}``: grammar-valid calls the tools then refused."""
    names = [schema["name"] for schema in healthcare_tools]
    assert {"SQL", "DefineCohort", "TodoWrite", "Python"} <= set(names)
    grammar = tool_call_grammar(healthcare_tools)
    assert gbnf.compiles(grammar)
    assert gbnf.compiles(tool_call_grammar(healthcare_tools, allow_text=False))
    assert gbnf.accepts(grammar, sql_call("humira_ca_top10"))
    assert gbnf.accepts(grammar, sql_call("x" * 100))
    for bad in ["siusedop.csv", "-", "}, ", "../etc", "", "a b", "x" * 101]:
        assert dataset_name_problem(bad) is not None
        assert not gbnf.accepts(grammar, sql_call(bad)), bad

    def cohort(**arguments: Any) -> str:
        return json.dumps({"name": "DefineCohort", "arguments": arguments})

    assert gbnf.accepts(grammar, cohort(name="ra_ca", start_date="2024-02-29"))
    for bad_name in ["../escape", "ra.csv", "-ra", "x" * 101]:
        assert _NAME.fullmatch(bad_name) is None
        assert not gbnf.accepts(grammar, cohort(name=bad_name)), bad_name
    for bad_date in ["2023-02-29", "2024-13-01", "last year", "2024/01/05", ""]:
        assert not gbnf.accepts(grammar, cohort(name="a", end_date=bad_date)), bad_date
    todo = {"content": "Count", "status": "pending", "activeForm": "Counting"}
    assert gbnf.accepts(grammar, json.dumps({"name": "TodoWrite", "arguments": {"todos": []}}))
    assert gbnf.accepts(grammar, json.dumps({"name": "TodoWrite", "arguments": {"todos": [todo]}}))
    assert not gbnf.accepts(grammar, json.dumps({"name": "TodoWrite", "arguments": {}}))


async def test_other_providers_still_get_the_tools_own_messages(
    claims_db: Path, tmp_path: Path
) -> None:
    """The schemas now carry pattern/format; a model that ignores them (any provider but the
    embedded one) still gets the tool's message saying what to write, not "must match
    pattern", and a name the tool takes is not refused."""
    backend = DuckDBBackend(claims_db)
    registry = ToolRegistry(tmp_path)
    registry.register(SQLTool(tmp_path, backend=backend))
    registry.register(DefineCohortTool(tmp_path, _runner(backend)))
    registry.register(TodoWriteTool(tmp_path))
    try:
        bad = await registry.execute(
            "SQL", {"sql": "SELECT 1", "dataset_name": "siusedop.csv", "description": ""}
        )
        assert bad["is_error"] is True
        assert "is not a plain file name: use only letters, digits, _ and -" in bad["content"]
        assert "pattern" not in bad["content"]
        long = await registry.execute(
            "SQL", {"sql": "SELECT 1", "dataset_name": "x" * 101, "description": ""}
        )
        assert "101 characters long; use at most 100" in long["content"]
        good = await registry.execute(
            "SQL", {"sql": "SELECT 1 AS x", "dataset_name": "one", "description": ""}
        )
        assert good["is_error"] is False, good
        assert (tmp_path / "one.csv").exists()
        name = await registry.execute("DefineCohort", {"name": "../escape", "drugs": ["X"]})
        assert "name '../escape' is not a plain file name" in name["content"]
        date = await registry.execute(
            "DefineCohort", {"name": "a", "drugs": ["HUMIRA"], "start_date": "2023-02-29"}
        )
        assert date["is_error"] is True
        assert "start_date '2023-02-29' is not a date (day is out of range" in date["content"]
        assert _date("", "start_date") is None  # "" is no bound to the tool...
        empty = await registry.execute(
            "DefineCohort", {"name": "a", "drugs": ["HUMIRA"], "start_date": ""}
        )
        assert "Invalid input" not in empty["content"]  # ...and the registry lets it through
        missing = await registry.execute("TodoWrite", {})
        assert missing["is_error"] is True
        assert "todos" in missing["content"]
        assert not (tmp_path / ".loopwright" / "todos.json").exists()
    finally:
        await registry.aclose()
        await backend.aclose()


def _runner(backend: DuckDBBackend) -> Any:
    from loopwright.healthcare.cohort import DefineCohort

    toolset = DefineCohort(backend)
    return toolset.runner


async def test_todo_write_without_todos_changes_nothing_and_says_what_to_send(
    tmp_path: Path,
) -> None:
    tool = TodoWriteTool(tmp_path)
    assert tool.schema["input_schema"]["required"] == ["todos"]
    todo = {"content": "Count", "status": "in_progress", "activeForm": "Counting"}
    saved = await tool.execute({"todos": [todo]})
    assert saved["is_error"] is False
    result = await tool.execute({})
    assert result["is_error"] is True
    assert 'send the whole list, {"todos": [' in result["content"]
    assert "Nothing was changed. The current list: Todo list (1 items" in result["content"]


def test_the_cohort_schema_says_what_the_tool_checks() -> None:
    name = COHORT_SCHEMA["properties"]["name"]
    assert re.fullmatch(name["pattern"][1:-1], "humira_ra_ca")
    for text in ["humira_ra_ca", "-x", "a.b", "x" * 100, "x" * 101, "", "ü"]:
        by_schema = bool(re.search(name["pattern"], text)) and len(text) <= name["maxLength"]
        assert by_schema == (_NAME.fullmatch(text) is not None), text


# --- a real model, at a high temperature -----------------------------------------------------


@pytest.fixture(scope="module")
def llama() -> Iterator[Any]:
    model = llama_cpp.Llama(
        bundled_model_path("smollm2-135m"), n_ctx=1024, n_threads=1, verbose=False
    )
    yield model
    model.close()


def test_sampled_sql_calls_always_have_a_dataset_name_the_tool_takes(
    llama: Any, healthcare_tools: list[dict[str, Any]]
) -> None:
    """SmolLM2 forced to call SQL at temperature 1.2, as the earlier hunt did: every
    dataset_name it writes is one the tool takes (each sample is read up to its
    dataset_name; the SQL before it can run long at this temperature)."""
    grammar = tool_call_grammar(healthcare_tools, allow_text=False, only=["SQL"])
    prompt = (
        "<|im_start|>user\nSave the top 10 HUMIRA prescribers in CA as a dataset."
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    tokens = llama.tokenize(prompt.encode(), add_bos=False, special=True)
    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    field = re.compile(r'"dataset_name": ?("(?:[^"\\]|\\.)*")')
    names: list[str] = []
    for seed in range(1, 9):
        llama.set_seed(seed)
        out = b""
        for count, token in enumerate(
            llama.generate(tokens, temp=1.2, grammar=llama_cpp.LlamaGrammar.from_string(grammar))
        ):
            if llama_cpp.llama_vocab_is_eog(vocab, token) or count >= 250:
                break
            out += llama.detokenize([token])
            found = field.search(out.decode(errors="replace"))
            if found:
                names.append(json.loads(found.group(1)))
                break
    assert len(names) >= 4, names
    for name in names:
        assert dataset_name_problem(name) is None, name
