"""PreToolUse and PostToolUse hooks through a real registry; Stop hooks; matchers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from loopwright.messages import ImageBlock, TextBlock
from loopwright.policy import Allow, Deny, Hooks, Matcher, Policy, PostToolUse, PreToolUse, Stop
from loopwright.tools import ToolRegistry, tool

from .conftest import RegistryFactory, text


@pytest.mark.parametrize(
    ("matcher", "name", "matches"),
    [
        ("Bash", "Bash", True),
        ("Bash", "BashOutput", False),
        ("mcp__*", "mcp__github__create_issue", True),
        ("mcp__*", "Bash", False),
        ("Write|Edit", "Edit", True),
        ("Write | Edit", "Write", True),
        ("Write|Edit", "Read", False),
        ("*", "anything", True),
        ("Read|mcp__github__*", "mcp__github__x", True),
    ],
)
def test_matchers(matcher: str, name: str, matches: bool) -> None:
    assert Matcher(matcher)(name) is matches


def test_an_empty_matcher_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Invalid hook matcher ''"):
        Hooks().pre_tool_use("", lambda event: None)


async def test_pre_hook_changes_the_input_in_place(
    make_registry: RegistryFactory, workspace: Path
) -> None:
    policy = Policy()

    @policy.hooks.pre_tool_use("Write")
    def into_drafts(event: PreToolUse) -> None:
        event.input["file_path"] = str(workspace / "drafts" / Path(event.input["file_path"]).name)

    result = await make_registry(policy).execute("Write", {"file_path": "a.md", "content": "x"})
    assert result["is_error"] is False
    assert (workspace / "drafts" / "a.md").read_text() == "x"
    assert not (workspace / "a.md").exists()


async def test_async_pre_hook_replaces_the_input(make_registry: RegistryFactory) -> None:
    policy = Policy()

    async def polite(event: PreToolUse) -> Allow:
        await asyncio.sleep(0)
        return Allow(updated_input={"text": event.input["text"] + ", please"})

    policy.hooks.pre_tool_use("echo", polite)
    result = await make_registry(policy).execute("echo", {"text": "pass the salt"})
    assert result == {"content": "pass the salt, please", "is_error": False}


async def test_pre_hook_deny_goes_back_to_the_model_and_nothing_runs(
    make_registry: RegistryFactory, workspace: Path
) -> None:
    policy = Policy()
    policy.hooks.pre_tool_use(
        "Write|Edit", lambda event: Deny("the repository is frozen until Monday")
    )
    result = await make_registry(policy).execute("Write", {"file_path": "a", "content": "x"})
    assert result == {
        "content": "Permission denied: the repository is frozen until Monday",
        "is_error": True,
    }
    assert not (workspace / "a").exists()


async def test_hooks_run_in_order_and_the_first_deny_stops_the_rest(
    make_registry: RegistryFactory,
) -> None:
    order: list[str] = []
    policy = Policy()

    @policy.hooks.pre_tool_use("*")
    def first(event: PreToolUse) -> None:
        order.append("first")
        event.input["text"] = event.input["text"].upper()

    @policy.hooks.pre_tool_use("echo")
    def second(event: PreToolUse) -> Deny | None:
        order.append(f"second saw {event.input['text']}")
        return Deny("shouting") if event.input["text"].isupper() else None

    @policy.hooks.pre_tool_use("*")
    def third(event: PreToolUse) -> None:
        order.append("third")

    result = await make_registry(policy).execute("echo", {"text": "hi"})
    assert result["content"] == "Permission denied: shouting"
    assert order == ["first", "second saw HI"]


async def test_hooks_only_see_the_tools_they_match(make_registry: RegistryFactory) -> None:
    seen: list[str] = []
    policy = Policy()
    policy.hooks.pre_tool_use("mcp__*", lambda event: seen.append(event.tool_name))
    registry = make_registry(policy)
    await registry.execute("echo", {"text": "x"})
    await registry.execute("mcp__github__create_issue", {"title": "x"})
    assert seen == ["mcp__github__create_issue"]


async def test_pre_hook_sees_the_call_context(
    make_registry: RegistryFactory, workspace: Path
) -> None:
    events: list[PreToolUse] = []
    policy = Policy()
    policy.hooks.pre_tool_use("Read", events.append)
    (workspace / "f.txt").write_text("x")
    registry = make_registry(policy, session_id="s1")
    await registry.execute("Read", {"file_path": "f.txt"}, call_id="toolu_1")
    (event,) = events
    assert event.tool_name == "Read"
    assert event.kind == "read"
    assert event.tool_call_id == "toolu_1"
    assert event.session_id == "s1"
    assert event.input == {"file_path": str(workspace / "f.txt")}  # paths already resolved


async def test_a_hook_cannot_redirect_a_path_outside_the_workspace(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_text("top secret")
    policy = Policy()
    policy.hooks.pre_tool_use(
        "Read", lambda event: Allow(updated_input={"file_path": str(tmp_path / "secret.txt")})
    )
    result = await make_registry(policy).execute("Read", {"file_path": "anything.txt"})
    assert result["is_error"] is True
    assert "Access denied" in text(result)
    assert "top secret" not in text(result)


async def test_a_hook_that_breaks_the_schema_is_reported(make_registry: RegistryFactory) -> None:
    policy = Policy()
    policy.hooks.pre_tool_use("echo", lambda event: Allow(updated_input={"txt": "typo"}))
    result = await make_registry(policy).execute("echo", {"text": "x"})
    assert result["is_error"] is True
    assert text(result).startswith("A PreToolUse hook changed the input into an invalid one.")


async def test_a_pre_hook_that_raises_denies_the_call(make_registry: RegistryFactory) -> None:
    def broken(event: PreToolUse) -> None:
        raise RuntimeError("database unreachable")

    policy = Policy()
    policy.hooks.pre_tool_use("echo", broken)
    result = await make_registry(policy).execute("echo", {"text": "x"})
    assert result["is_error"] is True
    assert "the PreToolUse hook" in text(result)
    assert "broken failed (RuntimeError: database unreachable)" in text(result)


async def test_a_pre_hook_returning_nonsense_denies_the_call(
    make_registry: RegistryFactory,
) -> None:
    policy = Policy()
    policy.hooks.pre_tool_use("echo", lambda event: "yes")  # type: ignore[arg-type,return-value]
    result = await make_registry(policy).execute("echo", {"text": "x"})
    assert result["is_error"] is True
    assert "returned str; a pre-hook returns None, Allow, Deny or Ask" in text(result)


async def test_the_models_input_is_never_changed_by_hooks(make_registry: RegistryFactory) -> None:
    policy = Policy()
    policy.hooks.pre_tool_use("echo", lambda event: event.input.update(text="changed"))
    original = {"text": "original"}
    result = await make_registry(policy).execute("echo", original)
    assert result["content"] == "changed"
    assert original == {"text": "original"}


async def test_hooks_added_after_the_registry_was_made_apply(
    make_registry: RegistryFactory,
) -> None:
    policy = Policy()
    registry = make_registry(policy)
    assert (await registry.execute("echo", {"text": "a"}))["content"] == "a"
    policy.hooks.pre_tool_use("echo", lambda event: Deny("not any more"))
    assert (await registry.execute("echo", {"text": "a"}))["is_error"] is True


# --- post-hooks --------------------------------------------------------------------------


async def test_post_hook_annotates_the_result(make_registry: RegistryFactory) -> None:
    policy = Policy()
    seen: list[tuple[dict[str, Any], str | None, float]] = []

    @policy.hooks.post_tool_use("echo")
    def note(event: PostToolUse) -> str:
        seen.append((dict(event.result), event.tool_call_id, event.duration_ms))
        return "[note: echo output is not verified]"

    @policy.hooks.post_tool_use("echo")
    def second(event: PostToolUse) -> None:
        seen.append((dict(event.result), None, 0.0))  # sees the first hook's annotation

    result = await make_registry(policy).execute("echo", {"text": "42"}, call_id="c1")
    assert result == {"content": "42\n\n[note: echo output is not verified]", "is_error": False}
    (first, call_id, duration_ms), (after, _, _) = seen
    assert first == {"content": "42", "is_error": False}
    assert after == result
    assert call_id == "c1"
    assert duration_ms >= 0


async def test_post_hook_replaces_the_result(make_registry: RegistryFactory) -> None:
    policy = Policy()

    async def summarise(event: PostToolUse) -> dict[str, Any]:
        return {"content": f"{len(event.result['content'])} characters", "is_error": False}

    policy.hooks.post_tool_use("*", summarise)
    result = await make_registry(policy).execute("echo", {"text": "hello"})
    assert result == {"content": "5 characters", "is_error": False}


async def test_post_hook_annotation_of_block_content(workspace: Path) -> None:
    @tool
    def picture() -> list[TextBlock | ImageBlock]:
        """A picture."""
        return [TextBlock("a picture:"), ImageBlock("aGVsbG8=", "image/png")]

    policy = Policy()
    policy.hooks.post_tool_use("picture", lambda event: "checked")
    registry = ToolRegistry(workspace, policy=policy)
    registry.register(picture)
    content = (await registry.execute("picture", {}))["content"]
    assert isinstance(content, list)
    assert [type(b) for b in content] == [TextBlock, ImageBlock, TextBlock]
    assert content[-1] == TextBlock("checked")


async def test_post_hooks_run_on_tool_errors_but_not_on_refusals(
    make_registry: RegistryFactory,
) -> None:
    seen: list[bool] = []
    policy = Policy(deny=["Bash"])
    policy.hooks.post_tool_use("*", lambda event: seen.append(event.result["is_error"]))
    registry = make_registry(policy)
    await registry.execute("Read", {"file_path": "missing.txt"})  # runs, reports an error
    await registry.execute("Bash", {"command": "ls"})  # refused before running
    await registry.execute("echo", {})  # invalid input: never runs
    assert seen == [True]


async def test_a_failing_post_hook_withholds_the_output(make_registry: RegistryFactory) -> None:
    def broken(event: PostToolUse) -> None:
        raise ValueError("bad scan")

    policy = Policy()
    policy.hooks.post_tool_use("echo", broken)
    result = await make_registry(policy).execute("echo", {"text": "secret stuff"})
    assert result["is_error"] is True
    assert "echo ran, but the PostToolUse hook" in text(result)
    assert "secret stuff" not in text(result)


# --- stop hooks --------------------------------------------------------------------------


async def test_stop_hooks_can_ask_to_keep_going() -> None:
    hooks = Hooks()
    assert await hooks.run_stop(Stop("s", "end_turn")) is None

    @hooks.stop
    async def tests_must_pass(event: Stop) -> str | None:
        return None if "tests pass" in event.final_text else "Run the tests before you stop."

    assert await hooks.run_stop(Stop("s", "end_turn", "done")) == "Run the tests before you stop."
    assert await hooks.run_stop(Stop("s", "end_turn", "tests pass")) is None
