"""A realistic, varied set of memories for ranking tests, made from templates and a seed.

The memories talk about the same people, projects and things in many ways, so most words of
a query appear in dozens of other memories (the distractors): "the staging database of
Falcon" competes with the production database of Falcon, the staging databases of other
projects, and every other memory about Falcon. Each (template, subject) pair occurs once, so
every query below has exactly one right answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


def _w(text: str) -> tuple[str, ...]:
    return tuple(text.split())


PEOPLE = _w(
    "Ada Grace Linus Margaret Alan Barbara Dennis Frances Ken Radia Edsger Donald Hedy "
    "Katherine John Sophie Tim Vint Shafi Leslie Niklaus Guido Yukihiro Bjarne James Anders "
    "Rasmus Brendan Larry Fernando Ivan Jean Lynn Anita Mary Dorothy Karen Annie Evelyn Joan"
)
PROJECTS = _w(
    "Falcon Heron Osprey Kestrel Magpie Puffin Condor Starling Wren Albatross Pelican Raven "
    "Swift Egret Finch Plover Robin Lark Ibis Crane Petrel Gannet Sparrow Curlew Tern Merlin "
    "Harrier Jay Kite Owl"
)
DRINKS = _w("tea coffee espresso matcha cocoa lemonade kombucha water chai")
TIMES = _w("morning afternoon evening")
MONTHS = _w("January February March April May June July August September October November December")
ALLERGENS = _w("peanuts shellfish gluten lactose pollen penicillin latex sesame eggs")
DATABASES = ("PostgreSQL 15", "PostgreSQL 16", "MySQL 8", "MariaDB 11", "SQLite", "MongoDB 7")
ENVIRONMENTS = ("staging", "production", "development")
CLOUDS = ("AWS", "GCP", "Azure", "Hetzner", "Fly.io")
REGIONS = ("eu-west-1", "us-east-1", "ap-south-1", "europe-north1", "us-central1")
WEEKDAYS = _w("Monday Tuesday Wednesday Thursday Friday")
TEAMS = _w("platform payments search growth security data mobile infrastructure")
CITIES = _w("Lisbon Berlin Toronto Nairobi Osaka Austin Lyon Oslo Melbourne Porto Krakow")
TRANSPORT = _w("bike train bus tram car scooter ferry")
AUTH = ("OAuth 2.0", "API keys", "mutual TLS", "JWT bearer tokens", "SAML single sign-on")
FORMATS = _w("PDF CSV Markdown Excel HTML")
LANGUAGES = _w("Python Rust Go Haskell TypeScript Kotlin Elixir OCaml Julia Zig")
DECISIONS = (
    "drop support for Python 3.8",
    "move the nightly build to 2am",
    "freeze features until the audit",
    "rewrite the billing module",
    "adopt trunk-based development",
    "retire the legacy dashboard",
)
PETS = _w("cat dog parrot rabbit tortoise hamster")
PET_NAMES = _w("Miso Pixel Turing Biscuit Nori Pepper Mochi Ziggy Luna Waffles")
CI = ("GitHub Actions", "GitLab CI", "Jenkins", "Buildkite", "CircleCI")
LINTERS = ("ruff", "eslint", "clippy", "golangci-lint", "rubocop")
EDITORS = _w("Neovim Emacs VSCode Helix Zed Sublime")
THEMES = _w("gruvbox solarized dracula nord monokai catppuccin")
HUMAN_LANGUAGES = _w("Portuguese German Japanese Swahili French Polish Norwegian Spanish")
VENDORS = ("Acme Supplies", "Globex", "Initech", "Umbrella Labs", "Stark Industries")
FOODS = ("ramen", "a falafel wrap", "sushi", "a caesar salad", "pho", "a burrito", "dal")
CARS = ("Volvo", "Toyota Prius", "Tesla Model 3", "Fiat 500", "Subaru Outback")
COLORS = _w("red blue green silver black white")


@dataclass(frozen=True)
class Target:
    """A memory that must rank first for ``query``."""

    text: str
    query: str


TARGETS = (
    Target(
        "The staging database for project Falcon runs PostgreSQL 15 on port 5433.",
        "Which port does the Falcon staging postgres database listen on?",
    ),
    Target("Grace is allergic to shellfish.", "Is Grace allergic to anything?"),
    Target("Linus prefers Neovim with the gruvbox theme.", "what editor theme does Linus like"),
    Target(
        "Project Osprey deploys to AWS in the eu-west-1 region every Tuesday.",
        "When is Osprey deploying, and to which region?",
    ),
    Target("Margaret's birthday is on March 14.", "When is Margaret's birthday?"),
    Target("Alan has a cat named Turing.", "what is the name of Alan's cat"),
    Target(
        "Invoice INV-2291 from Acme Supplies is due on June 30.",
        "when is invoice INV-2291 due?",
    ),
    Target(
        "Meeting notes: the Heron retro on May 2 decided to drop support for Python 3.8.",
        "What did the Heron retrospective decide about Python?",
    ),
    Target(
        "Barbara wants weekly reports as CSV files sent on Friday mornings.",
        "In which format does Barbara want her weekly reports?",
    ),
    Target(
        "The Kestrel repository uses Buildkite for continuous integration and clippy for linting.",
        "which CI does the kestrel repo use",
    ),
)


def _templates(rng: random.Random) -> list[tuple[str, str]]:
    """Every (subject key, memory text) the templates can make, shuffled."""
    c = rng.choice
    made: list[tuple[str, str]] = []
    for person in PEOPLE:
        other = c([p for p in PEOPLE if p != person])
        made += [
            (
                f"drink:{person}",
                f"{person} prefers {c(DRINKS)} over {c(DRINKS)} in the {c(TIMES)}.",
            ),
            (f"birthday:{person}", f"{person}'s birthday is on {c(MONTHS)} {rng.randint(1, 28)}."),
            (f"allergy:{person}", f"{person} is allergic to {c(ALLERGENS)}."),
            (f"team:{person}", f"{person} works on the {c(TEAMS)} team and reports to {other}."),
            (f"home:{person}", f"{person} lives in {c(CITIES)} and commutes by {c(TRANSPORT)}."),
            (
                f"reports:{person}",
                f"{person} wants weekly reports as {c(FORMATS)} files sent on {c(WEEKDAYS)} "
                "mornings.",
            ),
            (f"language:{person}", f"{person}'s favourite programming language is {c(LANGUAGES)}."),
            (f"pet:{person}", f"{person} has a {c(PETS)} named {c(PET_NAMES)}."),
            (f"editor:{person}", f"{person} prefers {c(EDITORS)} with the {c(THEMES)} theme."),
            (
                f"speaks:{person}",
                f"{person} speaks {c(HUMAN_LANGUAGES)} and is learning {c(HUMAN_LANGUAGES)}.",
            ),
            (f"lunch:{person}", f"{person} usually orders {c(FOODS)} for lunch."),
            (f"car:{person}", f"{person} drives a {c(COLORS)} {c(CARS)}."),
            (
                f"oncall:{person}",
                f"{person} is on call for {c(PROJECTS)} during the week of {c(MONTHS)} "
                f"{rng.randint(1, 28)}.",
            ),
        ]
    for project in PROJECTS:
        for env in ENVIRONMENTS:
            made.append(
                (
                    f"db:{project}:{env}",
                    f"The {env} database for project {project} runs {c(DATABASES)} on port "
                    f"{rng.randint(3000, 9999)}.",
                )
            )
        made += [
            (
                f"deploy:{project}",
                f"Project {project} deploys to {c(CLOUDS)} in the {c(REGIONS)} region every "
                f"{c(WEEKDAYS)}.",
            ),
            (f"auth:{project}", f"The {project} API uses {c(AUTH)} for authentication."),
            (
                f"ci:{project}",
                f"The {project} repository uses {c(CI)} for continuous integration and "
                f"{c(LINTERS)} for linting.",
            ),
            (
                f"retro:{project}",
                f"Meeting notes: the {project} retro on {c(MONTHS)} {rng.randint(1, 28)} "
                f"decided to {c(DECISIONS)}.",
            ),
            (
                f"owner:{project}",
                f"{c(PEOPLE)} owns the {project} service and reviews its pull requests.",
            ),
            (
                f"budget:{project}",
                f"The {project} cloud budget is {rng.randint(2, 90)}k dollars per quarter.",
            ),
        ]
    for number in range(300):
        made.append(
            (
                f"invoice:{number}",
                f"Invoice INV-{1000 + number} from {c(VENDORS)} is due on {c(MONTHS)} "
                f"{rng.randint(1, 28)}.",
            )
        )
    rng.shuffle(made)
    return made


def memories(count: int = 1000, seed: int = 7) -> list[str]:
    """``count`` distinct memories, the :data:`TARGETS` among them, in a shuffled order."""
    rng = random.Random(seed)
    taken = {_key_of(target.text) for target in TARGETS}
    texts = [target.text for target in TARGETS]
    seen = set(texts)
    for key, text in _templates(rng):
        if len(texts) >= count:
            break
        if key in taken or text in seen:
            continue
        taken.add(key)
        seen.add(text)
        texts.append(text)
    assert len(texts) == count, f"the templates make only {len(texts)} memories"
    rng.shuffle(texts)
    return texts


def _key_of(text: str) -> str:
    """The subject key a target would have had from the templates (so it is not made twice)."""
    keys = {
        "Falcon runs": "db:Falcon:staging",
        "Grace is allergic": "allergy:Grace",
        "Linus prefers Neovim": "editor:Linus",
        "Osprey deploys": "deploy:Osprey",
        "Margaret's birthday": "birthday:Margaret",
        "Alan has a": "pet:Alan",
        "INV-2291": "invoice:1291",
        "Heron retro": "retro:Heron",
        "Barbara wants": "reports:Barbara",
        "Kestrel repository": "ci:Kestrel",
    }
    for fragment, key in keys.items():
        if fragment in text:
            return key
    raise AssertionError(f"no key for {text!r}")
