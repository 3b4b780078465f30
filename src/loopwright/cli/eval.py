"""``loopwright eval SUITE``: run a task suite and write its JSON results and HTML report.

Only typer is imported at start-up; the suite runner, the agent and rich are imported when
the command runs.

Exit status: 0 when every task passed, 1 when any failed or errored, 2 for a bad suite file,
model or option, 130 when interrupted (the results so far are saved; ``--resume`` goes on).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loopwright.cli.healthcare import AgentRowsOption
from loopwright.cli.options import COMPACT_FLAGS, AgentCompactOption, DatabaseOption
from loopwright.cli.serve import AGENTS, ROWS_WITH_DATABASE

if TYPE_CHECKING:
    from loopwright.evals.suite import Suite
    from loopwright.healthcare.suite import HealthcareAgentFactory
    from loopwright.models.base import Model

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: The options' defaults (the resume command repeats only the settings that differ).
PARALLEL = 4
EPOCHS = 1
RETRIES = 2
RETRY_DELAY = 1.0
EXECUTOR = "local"


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to the ``loopwright`` app."""
    app.command("eval")(eval_command)


def eval_command(
    suite: Annotated[
        Path | None,
        typer.Argument(
            metavar="[SUITE]",
            help=(
                "The suite file (.yaml or .jsonl). With --agent healthcare and no suite: the "
                "golden research questions."
            ),
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            metavar="MODEL",
            help=(
                "Model string, as for `loopwright run` ('auto': LOOPWRIGHT_MODEL, else by the "
                "API keys set). With 'scripted', each task plays its own script."
            ),
        ),
    ] = "auto",
    parallel: Annotated[
        int, typer.Option("--parallel", "-n", min=1, metavar="N", help="Tasks run at once.")
    ] = PARALLEL,
    epochs: Annotated[
        int, typer.Option("--epochs", "-k", min=1, metavar="K", help="Runs of each task.")
    ] = EPOCHS,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            min=0,
            metavar="N",
            help="Retries of infrastructure failures (model outages, hung runs) per task.",
        ),
    ] = RETRIES,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Keep the results already in the output file; run only the rest."
        ),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="The JSON result file (default: <suite file name>.results.json here).",
        ),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", metavar="PATH", help="The HTML report (default: next to the JSON file)."
        ),
    ] = None,
    judge_model: Annotated[
        str | None,
        typer.Option(
            "--judge-model",
            metavar="MODEL",
            help="Model of LLM-judge checks (default: the suite's, EVALS_MODEL, or --model).",
        ),
    ] = None,
    task: Annotated[
        list[str] | None,
        typer.Option("--task", "-t", metavar="ID", help="Run only this task (repeatable)."),
    ] = None,
    retry_delay: Annotated[
        float,
        typer.Option(
            "--retry-delay", min=0.0, metavar="SECONDS", help="Pause before the first retry."
        ),
    ] = RETRY_DELAY,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            metavar="NAME",
            help="Where tasks run: local (in this process) or ray (as Ray tasks).",
        ),
    ] = EXECUTOR,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            metavar="ADDR",
            help="The Ray cluster of --executor ray (default: Ray started on this machine).",
        ),
    ] = None,
    agent: Annotated[
        str,
        typer.Option(
            "--agent",
            metavar="AGENT",
            help=(
                "Which agent does the tasks: standard (the suite's tools and system prompt) "
                "or healthcare (the healthcare research agent over claims data)."
            ),
        ),
    ] = "standard",
    database: DatabaseOption = None,
    rows: AgentRowsOption = None,
    compact: AgentCompactOption = None,
) -> None:
    """Run a task suite: each task in its own session and workspace, checked, with a JSON
    result file, an HTML report and a summary table. `--agent healthcare` with no suite
    asks the healthcare agent the golden research questions.

    Exit status: 0 when every task passed, 1 when any failed, 2 for bad input, 130 when
    interrupted (resume with --resume).
    """
    raise typer.Exit(
        run_eval(
            suite,
            model=model,
            parallel=parallel,
            epochs=epochs,
            retries=retries,
            resume=resume,
            output=output,
            html=html,
            judge_model=judge_model,
            tasks=task or [],
            retry_delay=retry_delay,
            executor=executor,
            ray_address=ray_address,
            agent=agent,
            database=database,
            rows=rows,
            compact=compact,
        )
    )


def run_eval(
    suite_path: Path | None,
    *,
    model: str,
    parallel: int,
    epochs: int,
    retries: int,
    resume: bool,
    output: Path | None,
    html: Path | None,
    judge_model: str | None,
    tasks: list[str],
    retry_delay: float,
    executor: str = EXECUTOR,
    ray_address: str | None = None,
    agent: str = "standard",
    database: str | None = None,
    rows: int | None = None,
    compact: bool | None = None,
) -> int:
    """The command's body; returns the exit status. ``compact``: ``--compact``/``--full``
    (``None``: neither; see :func:`loopwright.cli.healthcare.compact_mode`)."""
    import asyncio
    import sys

    from loopwright.cli.render import make_console
    from loopwright.cli.runtime import CliError, announce_model, choose_model
    from loopwright.evals.bench import TaskResult, default_output, run_suite
    from loopwright.evals.ray_executor import RayExecutor, RayUnavailable
    from loopwright.evals.report import print_summary, write_html
    from loopwright.evals.suite import SuiteError, load_suite
    from loopwright.models import resolve_model
    from loopwright.models.base import ModelError

    def fail(message: str, code: int) -> int:
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        return code

    if executor not in ("local", "ray"):
        return fail(f"unknown executor {executor!r}; use local or ray", EXIT_USAGE)
    if ray_address is not None and executor != "ray":
        return fail("--ray-address is for --executor ray; add it, or drop the address", EXIT_USAGE)
    if agent not in AGENTS:
        return fail(f"unknown agent {agent!r}; use one of: {', '.join(AGENTS)}", EXIT_USAGE)
    healthcare = agent == "healthcare"
    if not healthcare and (database is not None or rows is not None):
        return fail("--database and --rows go with --agent healthcare", EXIT_USAGE)
    if not healthcare and compact is not None:
        return fail(f"{COMPACT_FLAGS[compact]} goes with --agent healthcare", EXIT_USAGE)
    if database is not None and rows is not None:
        return fail(ROWS_WITH_DATABASE, EXIT_USAGE)
    if suite_path is None and not healthcare:
        return fail(
            "give the suite file to run (or --agent healthcare, for the healthcare agent's "
            "golden research questions)",
            EXIT_USAGE,
        )
    from loopwright.evals.bench import is_scripted

    factory: HealthcareAgentFactory | None = None
    try:
        if suite_path is None:
            from loopwright.healthcare.suite import golden_suite

            suite = golden_suite(tasks)
        else:
            suite = load_suite(suite_path)
            if tasks:
                suite = suite.select(tasks)
        choice = choose_model(model)
        if healthcare:
            from loopwright.cli.healthcare import embedded_choice

            choice = embedded_choice(choice)
        if suite_path is None and is_scripted(choice.spec):
            return fail(
                "the golden questions have no scripts for the scripted model to play; run "
                "them with a real one (--model local:gemma3-270m, anthropic, openai...)",
                EXIT_USAGE,
            )
        probe = resolve_model(choice.spec)  # a bad model string or missing key fails here
        if healthcare:
            from loopwright.cli.healthcare import compact_mode
            from loopwright.healthcare.suite import golden_database_problem

            # the mode the flags or LOOPWRIGHT_COMPACT chose, which a resume repeats
            compact = compact_mode(compact)
            factory = _healthcare_factory(choice.spec, database, rows, compact)
            suite = healthcare_limits(suite, probe, compact)
            # golden checks the database cannot give references for would fail every task
            problem = golden_database_problem(suite, factory.check_extra)
            if problem is not None:
                factory.close()
                return fail(problem, EXIT_USAGE)
    except SuiteError as exc:
        return fail(str(exc), EXIT_USAGE)
    except ModelError as exc:
        return fail(f"{exc} (or choose another model with --model)", EXIT_USAGE)
    except CliError as exc:
        return fail(exc.message, exc.exit_code)

    announce_model(choice, "each task's script" if is_scripted(choice.spec) else probe.name)
    if output is not None:
        json_path = output
    elif suite_path is None:
        json_path = Path(f"{suite.name}.results.json")
    else:
        json_path = default_output(suite_path)
    html_path = html if html is not None else json_path.with_suffix(".html")
    total = len(suite.tasks) * epochs
    recorded = _recorded(json_path, suite.name) if resume else set()
    todo = sum(1 for t in suite.tasks for e in range(1, epochs + 1) if (t.id, e) not in recorded)
    already = f" ({total - todo} already recorded)" if resume else ""
    print(
        f"suite {suite.name}: {len(suite.tasks)} task(s) x {epochs} epoch(s), {todo} run(s) to "
        f"go{already}, {parallel} at a time; results in {json_path}",
        file=sys.stderr,
        flush=True,
    )
    total = todo
    finished = 0

    # on a terminal, a progress bar (the per-run lines print above it); else plain lines
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar: Progress | None = None
    if sys.stderr.isatty() and total:
        bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        bar_task = bar.add_task(f"suite {suite.name}", total=total)

    def progress(result: TaskResult) -> None:
        nonlocal finished
        finished += 1
        mark = {"passed": "✓", "failed": "✗"}.get(result.status, "!")
        extra = f" ({result.error})" if result.status == "error" and result.error else ""
        line = (
            f"{mark} {result.task_id} [epoch {result.epoch}] {result.status} "
            f"in {result.duration_s:.2f}s{extra}"
        )
        if bar is not None:
            bar.console.print(line, highlight=False, markup=False)
            bar.advance(bar_task)
        else:
            print(line, file=sys.stderr, flush=True)

    with asyncio.Runner() as runner, bar if bar is not None else contextlib.nullcontext():
        try:
            runner.run(probe.aclose())
            record = runner.run(
                run_suite(
                    suite,
                    factory,
                    model=choice.spec,
                    judge=judge_model,
                    epochs=epochs,
                    parallel=parallel,
                    retries=retries,
                    retry_delay=retry_delay,
                    output=json_path,
                    resume=resume,
                    on_result=progress,
                    executor=RayExecutor(ray_address, parallel=parallel)
                    if executor == "ray"
                    else None,
                )
            )
        except KeyboardInterrupt:
            again = _command_again(
                suite_path,
                agent=agent,
                model=choice.spec,
                database=database,
                rows=rows,
                compact=compact,
                output=output,
                html=html,
                parallel=parallel,
                epochs=epochs,
                retries=retries,
                retry_delay=retry_delay,
                judge_model=judge_model,
                tasks=tasks,
                executor=executor,
                ray_address=ray_address,
            )
            kept = (
                f"the results so far are in {json_path}"
                if json_path.is_file()
                else "no run had finished, so no result file was written"
            )
            print(
                f"interrupted after {finished} of {total} run(s); {kept}. Go on with: {again}",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_INTERRUPTED
        except (SuiteError, RayUnavailable) as exc:
            return fail(str(exc), EXIT_USAGE)
        finally:
            if factory is not None:
                factory.close()
    write_html(record, html_path)
    console = make_console()
    print_summary(record, console)
    console.print(f"results: {json_path}\nreport:  {html_path}", highlight=False)
    summary = record.summary()
    return EXIT_OK if summary.runs and summary.passed == summary.runs else EXIT_FAILED


def _healthcare_factory(
    model: str, database: str | None, rows: int | None, compact: bool | None = None
) -> HealthcareAgentFactory:
    """The healthcare agent's factory, on the database given or the generated one (built
    now, with a progress bar), in compact mode as ``compact`` says (``None``: for the tiny
    models, :func:`~loopwright.healthcare.agent.is_small_model`); one agent is made and
    closed first, so that a database the agent cannot read is refused before any task runs.
    Raises :class:`CliError`."""
    import asyncio

    from loopwright.cli.healthcare import DEFAULT_ROWS, agent_errors, generated_database
    from loopwright.healthcare.agent import healthcare_agent
    from loopwright.healthcare.suite import HealthcareAgentFactory

    with agent_errors(database):
        source = database if database is not None else generated_database(rows or DEFAULT_ROWS)
        first = healthcare_agent("scripted", database=source)
        asyncio.run(first.aclose())
        return HealthcareAgentFactory(model, database=source, compact=compact)


def healthcare_limits(suite: Suite, model: Model, compact: bool | None = None) -> Suite:
    """``suite`` for the healthcare agent on ``model``: in compact mode (``compact``; by
    default for the embedded models) it gets the turn limit ``loopwright healthcare`` gives
    that mode, unless the suite sets one of its own (a task's own limit still wins)."""
    from loopwright.healthcare.agent import COMPACT_MAX_TURNS, is_small_model

    small = is_small_model(model) if compact is None else compact
    if not small or suite.limits.max_turns is not None:
        return suite
    limits = suite.limits.model_copy(update={"max_turns": COMPACT_MAX_TURNS})
    return suite.model_copy(update={"limits": limits})


def _command_again(
    suite_path: Path | None,
    *,
    agent: str,
    model: str,
    database: str | None,
    rows: int | None,
    output: Path | None,
    compact: bool | None = None,
    html: Path | None,
    parallel: int,
    epochs: int,
    retries: int,
    retry_delay: float,
    judge_model: str | None,
    tasks: list[str],
    executor: str,
    ray_address: str | None,
) -> str:
    """The command that resumes this run: the same suite, model, agent, database, epochs,
    tasks and settings (a resume with another model or fewer epochs would not finish it)."""
    import shlex

    words = ["loopwright", "eval"]
    if suite_path is not None:
        words.append(str(suite_path))
    if agent != "standard":
        words += ["--agent", agent]
    words += ["--model", model]
    if database is not None:
        words += ["--database", database]
    if rows is not None:
        words += ["--rows", str(rows)]
    if compact is not None:
        words.append(COMPACT_FLAGS[compact])
    for task in tasks:
        words += ["--task", task]
    if epochs != EPOCHS:
        words += ["--epochs", str(epochs)]
    if parallel != PARALLEL:
        words += ["--parallel", str(parallel)]
    if retries != RETRIES:
        words += ["--retries", str(retries)]
    if retry_delay != RETRY_DELAY:
        words += ["--retry-delay", f"{retry_delay:g}"]
    if judge_model is not None:
        words += ["--judge-model", judge_model]
    if executor != EXECUTOR:
        words += ["--executor", executor]
    if ray_address is not None:
        words += ["--ray-address", ray_address]
    words.append("--resume")
    if output is not None:
        words += ["--output", str(output)]
    if html is not None:
        words += ["--html", str(html)]
    return shlex.join(words)


def _recorded(path: Path, suite: str) -> set[tuple[str, int]]:
    """The (task, epoch) runs a result file already holds (what a resume skips)."""
    from loopwright.evals.bench import SuiteRun
    from loopwright.evals.suite import SuiteError

    if not path.exists():
        return set()
    try:
        previous = SuiteRun.load(path)
    except SuiteError:
        return set()  # run_suite reports it
    if previous.suite != suite:
        return set()
    return {(r.task_id, r.epoch) for r in previous.results if r.status != "error"}


__all__ = ["register", "run_eval"]
