"""Reading judges' replies: the forms real models send, and clear errors for the rest."""

from __future__ import annotations

import pytest

from loopwright.evals.parse import JudgeReplyError, parse_verdict, verdict_schema

WELL_FORMED = '{"score": 85, "passed": true, "issues": [], "reasoning": "Complete and clear."}'


def test_a_plain_json_reply_is_read_as_it_is() -> None:
    verdict = parse_verdict(WELL_FORMED)

    assert (verdict.score, verdict.passed, verdict.issues) == (85, True, [])
    assert verdict.reasoning == "Complete and clear."


@pytest.mark.parametrize(
    "reply",
    [
        f"```json\n{WELL_FORMED}\n```",
        f"```\n{WELL_FORMED}\n```",
        f"Here is my evaluation:\n\n{WELL_FORMED}\n\nLet me know if you need more.",
        f"<think>The answer looks right {{maybe}}.</think>\n{WELL_FORMED}",
        "Sure.\n```python\nprint('not it')\n```\n```json\n" + WELL_FORMED + "\n```",
    ],
    ids=["json-fence", "bare-fence", "prose-around", "think-block", "json-fence-preferred"],
)
def test_wrapped_replies_are_found(reply: str) -> None:
    verdict = parse_verdict(reply)

    assert verdict.score == 85
    assert verdict.passed is True


def test_python_style_json_is_repaired_outside_strings_only() -> None:
    reply = (
        "{'score': '72', 'passed': True, 'issues': ['says \"maybe\", then None',], "
        "'reasoning': \"it's fine, mostly\",}"
    )

    verdict = parse_verdict(reply)

    assert verdict.score == 72
    assert verdict.passed is True
    assert verdict.issues == ['says "maybe", then None']
    assert verdict.reasoning == "it's fine, mostly"


@pytest.mark.parametrize(
    ("score", "expected"),
    [('"85"', 85), ('"8/10"', 80), ('"64%"', 64), ("91.6", 92), ('" 7 / 10 "', 70)],
)
def test_scores_written_as_text_or_fractions_become_0_to_100(score: str, expected: int) -> None:
    verdict = parse_verdict(f'{{"score": {score}, "passed": false}}')

    assert verdict.score == expected


def test_missing_passed_follows_the_threshold_and_aliases_are_read() -> None:
    reply = (
        '{"score": 65, "hallucinations": ["revenue was $2M"], "explanation": "One invented '
        'figure.", "per_claim": {"revenue": false}}'
    )

    verdict = parse_verdict(reply, pass_threshold=60)

    assert verdict.passed is True  # 65 >= 60; the judge did not say
    assert verdict.issues == ["revenue was $2M"]
    assert verdict.reasoning == "One invented figure."
    assert verdict.details == {"per_claim": {"revenue": False}}
    assert parse_verdict(reply, pass_threshold=70).passed is False


def test_passed_as_words_and_issue_objects() -> None:
    verdict = parse_verdict(
        '{"score": 40, "passed": "no", "issues": [{"issue": "wrong join"}, "no LIMIT", 3]}'
    )

    assert verdict.passed is False
    assert verdict.issues == ["wrong join", "no LIMIT", "3"]


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        ("", "empty"),
        ("I think the answer is good, 8 out of 10.", "no JSON object"),
        ('{"passed": true, "reasoning": "fine"}', "no 'score'"),
        ('{"score": 140, "passed": true}', "from 0 to 100"),
        ('{"score": "high", "passed": true}', "from 0 to 100"),
        ('{"score": 50, "passed": "perhaps"}', "true or false"),
        ('{"score": 80, "passed": true, "reasoning": "cut off', "not valid"),
        ('{"score": 80, "issues": "x" "y"}', "not valid"),
        ("[1, 2]", "no JSON object"),
    ],
)
def test_unusable_replies_raise_an_error_that_says_what_is_wrong(reply: str, says: str) -> None:
    with pytest.raises(JudgeReplyError, match=says):
        parse_verdict(reply)


def test_the_schema_bounds_what_a_judge_may_write() -> None:
    schema = verdict_schema(max_issues=3, max_chars=400)

    assert schema["required"] == ["score", "passed", "issues", "reasoning"]
    assert schema["properties"]["score"] == {"type": "integer", "minimum": 0, "maximum": 100}
    assert schema["properties"]["issues"]["maxItems"] == 3
    assert schema["properties"]["reasoning"]["maxLength"] == 400
