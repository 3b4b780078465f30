"""Golden research questions for the healthcare agent, each with reference SQL and key facts.

A golden question is what an analyst would ask in plain English ("Find the top 10 prescribers
of HUMIRA in California"), the DuckDB query that answers it on the generated claims data, and a
function that turns the query's result into the facts a correct answer states (the top entity
and its count, a total, a month...). Answers are never hard-coded: the reference is computed
from the database at check time, so the questions hold for any size and seed. Averages and
shares are not rounded in the reference: the checker accepts the rounding an answer (or its CSV)
states, "4.7" or "4.74" fills for 4.7416, where a reference rounded to 4.7 would refuse 4.74.

Ties are honoured: when two prescribers share the top count, naming either is correct. An entity
fact knows the names of the other entities of its kind (the reference column's other values and
the domain's full list), so that "Virginia" is not found in "West Virginia".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loopwright.healthcare.check import (
    Fact,
    Reference,
    entity_fact,
    month_spellings,
    number_fact,
    quarter_spellings,
)
from loopwright.healthcare.data import (
    CONDITION_LABELS,
    DRUGS,
    SCHOOLS,
    SPECIALTIES,
    STATE_NAMES,
    connect_read_only,
)

if TYPE_CHECKING:
    import duckdb

FactsFn = Callable[[Reference], list[Fact]]


@dataclass(frozen=True, slots=True)
class GoldenQuestion:
    """A research question, its reference SQL, and how to read the key facts off the result.

    ``csv_columns`` names the reference columns an agent's saved CSV should reproduce.
    ``empty_facts``, when given, are the facts of an empty result: for questions whose honest
    answer on small generated data can be "none" (no HUMIRA fills in California, say).
    """

    id: str
    question: str
    sql: str
    facts: FactsFn
    tables: tuple[str, ...]
    tags: tuple[str, ...] = ()
    csv_columns: tuple[str, ...] | None = None
    empty_facts: Callable[[], list[Fact]] | None = None

    def reference(self, database: str | os.PathLike[str] | duckdb.DuckDBPyConnection) -> Reference:
        """Run the reference SQL on ``database`` (a path, opened read-only, or a connection)."""
        if isinstance(database, (str, os.PathLike)):
            con = connect_read_only(database)
            try:
                return Reference.from_query(con, self.sql)
            finally:
                con.close()
        return Reference.from_query(database, self.sql)

    def key_facts(self, reference: Reference) -> list[Fact]:
        """The facts a correct answer states, derived from the reference result."""
        if not reference.rows:
            if self.empty_facts is not None:
                return self.empty_facts()
            raise ValueError(
                f"the reference result of golden question {self.id!r} is empty: the database "
                "is too small or is not the generated claims data; build it with "
                "loopwright.healthcare.data.ensure_database()."
            )
        return self.facts(reference)


# --- spellings of the domain's entities ------------------------------------------------------

_SPECIALTY_EXTRA: dict[str, tuple[str, ...]] = {
    "Hematology/Oncology": ("oncology", "hematology oncology", "oncologists", "hem/onc"),
    "Obstetrics & Gynecology": (
        "OB/GYN", "OB-GYN", "obstetrics and gynecology", "gynecology", "gynecologist",
        "gynecologists", "OB/GYNs"),
    "Family Medicine": ("family practice", "family doctor", "family doctors", "family physicians",
                        "family practitioners"),
    "Internal Medicine": ("internists",),
    "Infectious Disease": (
        "infectious diseases", "infectious disease specialists", "ID specialists"),
    "Physician Assistant": ("physician assistants", "PAs"),
    "Nurse Practitioner": ("nurse practitioners", "NPs"),
}  # fmt: skip

_CONDITION_EXTRA: dict[str, tuple[str, ...]] = {
    "Atrial fibrillation": ("AFib", "A-fib", "AF"),
    "Type 2 diabetes": ("type II diabetes", "T2D", "T2DM", "diabetes mellitus type 2"),
    "Non-small cell lung cancer": ("NSCLC", "non small cell lung cancer", "lung cancer"),
    "Essential hypertension": ("hypertension", "high blood pressure"),
    "Major depressive disorder": ("MDD", "major depression", "depression"),
    "Gastroesophageal reflux disease": ("GERD", "acid reflux"),
    "Chronic kidney disease": ("CKD",),
    "Heart failure": ("HF", "congestive heart failure"),
    "Multiple myeloma": ("myeloma",),
    "Rheumatoid arthritis": ("RA",),
    "Deep vein thrombosis": ("DVT",),
    "HIV infection": ("HIV",),
    "Hyperlipidemia": ("high cholesterol",),
}

#: the places of service the costs question compares, as an answer names them
_PLACE_EXTRA: dict[str, tuple[str, ...]] = {
    "Inpatient hospital": ("Inpatient hospital", "inpatient", "hospital inpatient"),
    "Office": ("Office", "office visits", "office visit"),
}

_NATURE_EXTRA: dict[str, tuple[str, ...]] = {
    "Food and Beverage": ("food & beverage", "food and beverages", "meals"),
    "Compensation for services other than consulting": (
        "speaker fees", "speaking fees", "speaker programs", "services other than consulting"),
    "Royalty or License": ("royalties", "royalty", "licenses", "royalty/license"),
    # not a bare "consulting": it is also the last word of "services other than consulting"
    "Consulting Fee": ("consulting fees", "consulting fee payments"),
    "Travel and Lodging": ("travel & lodging", "travel"),
    "Grant": ("grants",),
    "Honoraria": ("honorarium", "honoraria"),
    "Education": ("educational", "education"),
}  # fmt: skip

# Short names in common use. An alias must name one entity only: no "Janssen" (Janssen Biotech
# and Janssen Pharmaceuticals both pay), no "Duke" or "Vanderbilt" (each also has a School of
# Nursing), no "Texas" (two University of Texas schools).
_MANUFACTURER_EXTRA: dict[str, tuple[str, ...]] = {
    "GlaxoSmithKline": ("GSK", "Glaxo"),
    "Eli Lilly": ("Lilly", "Eli Lilly and Company"),
    "Gilead Sciences": ("Gilead",),
    "Bristol-Myers Squibb": ("BMS", "Bristol Myers", "Bristol-Myers"),
    "Boehringer Ingelheim": ("Boehringer",),
    "Novo Nordisk": ("Novo",),
    "Merck": ("Merck & Co", "MSD"),
    "AstraZeneca": ("Astra Zeneca",),
    "Dr. Reddy's": ("Dr Reddys", "Reddy's"),
}
_SCHOOL_EXTRA: dict[str, tuple[str, ...]] = {
    "Johns Hopkins University": ("Johns Hopkins", "JHU"),
    "University of California, San Francisco": ("UCSF", "UC San Francisco"),
    "Harvard University": ("Harvard",),
    "Stanford University": ("Stanford",),
    "Yale University": ("Yale",),
    "University of Pennsylvania": ("UPenn", "Penn Medicine"),
    "Washington University in St. Louis": ("WashU", "WUSTL", "Washington University"),
    "University of North Carolina": ("UNC",),
    "University of Texas Southwestern": ("UT Southwestern", "UTSW"),
    "University of Texas Health Science Center": ("UTHealth",),
    "Mayo Clinic Alix School of Medicine": ("Mayo Clinic", "Mayo"),
    "Ohio State University": ("Ohio State",),
    "Baylor College of Medicine": ("Baylor",),
    "Philadelphia College of Osteopathic Medicine": ("PCOM",),
    "Loyola University Chicago": ("Loyola",),
    "A.T. Still University": ("ATSU",),
    "Saint Louis University": ("SLU", "St. Louis University"),
}

#: every value of each kind of entity, for telling a name from a longer one that contains it
_MANUFACTURERS = tuple(sorted({drug.manufacturer for drug in DRUGS}))
_SPECIALTY_NAMES = tuple(specialty.name for specialty in SPECIALTIES)
_DRUG_NAMES = tuple(drug.name for drug in DRUGS)


def specialty_spellings(name: str) -> tuple[str, ...]:
    """A specialty and what its practitioners are called ("Rheumatology", "rheumatologists")."""
    spellings = [name]
    for specialty in SPECIALTIES:
        if specialty.name == name:
            spellings += [specialty.practitioner, specialty.practitioner + "s"]
    spellings += _SPECIALTY_EXTRA.get(name, ())
    return tuple(spellings)


def state_spellings(code: str) -> tuple[str, ...]:
    """A state by its code and its name."""
    return (code, STATE_NAMES.get(code, code))


def drug_spellings(name: str) -> tuple[str, ...]:
    """A drug's name; multi-word brands also by their first word ("NURTEC ODT" -> "Nurtec")."""
    first = name.split()[0]
    return (name, first) if first != name else (name,)


def condition_spellings(label: str) -> tuple[str, ...]:
    return (label, *_CONDITION_EXTRA.get(label, ()))


def nature_spellings(nature: str) -> tuple[str, ...]:
    return (nature, *_NATURE_EXTRA.get(nature, ()))


def manufacturer_spellings(name: str) -> tuple[str, ...]:
    """A manufacturer and its usual short names ("GSK", "Lilly", "BMS")."""
    return (name, *_MANUFACTURER_EXTRA.get(name, ()))


def school_spellings(name: str) -> tuple[str, ...]:
    """A school and its usual short names ("Johns Hopkins", "UCSF")."""
    return (name, *_SCHOOL_EXTRA.get(name, ()))


# --- building facts from a reference result --------------------------------------------------


def _tied_top(reference: Reference, value_column: str, row: int = 0) -> list[int]:
    """Indexes of the rows whose ``value_column`` equals that of ``row`` (sorted results)."""
    values = reference.column(value_column)
    return [i for i, v in enumerate(values) if v == values[row]]


def _entity(
    label: str,
    reference: Reference,
    entity_column: str,
    rows: Sequence[int],
    spell: Callable[[str], tuple[str, ...]] = lambda v: (v,),
    known: Sequence[str] = (),
    *,
    required: bool = True,
) -> Fact:
    """The entity of ``rows`` (ties), knowing the other entities of its kind: the column's
    other values and ``known`` (the domain's list, as the result may not hold them all)."""
    chosen = list(dict.fromkeys(str(reference.value(entity_column, index)) for index in rows))
    spellings = [spelling for value in chosen for spelling in spell(value)]
    others = dict.fromkeys(str(v) for v in (*reference.column(entity_column), *known))
    other_spellings = [s for value in others if value not in chosen for s in spell(value)]
    return entity_fact(label, *spellings, others=other_spellings, required=required)


def _number(
    label: str,
    reference: Reference,
    column: str,
    rows: Sequence[int] = (0,),
    *,
    percent: bool = False,
    required: bool = True,
    of_entity: str | None = None,
) -> Fact:
    """The value of ``column`` in ``rows`` (ties); ``of_entity`` labels the entity fact of
    those rows, when the value is theirs (not a total over the result)."""
    values = [float(reference.value(column, i) or 0) for i in rows]
    return number_fact(label, values, percent=percent, required=required, of_entity=of_entity)


def top_facts(
    entity_label: str,
    entity_column: str,
    value_label: str,
    value_column: str,
    spell: Callable[[str], tuple[str, ...]] = lambda v: (v,),
    *,
    percent_column: str | None = None,
    known: Sequence[str] = (),
) -> FactsFn:
    """Facts of a ranked result: the top entity (any of those tied) and its value, stated with it.

    ``known`` lists every entity of the kind (all states, all schools), see ``_entity``.
    """

    def facts(reference: Reference) -> list[Fact]:
        tied = _tied_top(reference, value_column)
        found = [
            _entity(entity_label, reference, entity_column, tied, spell, known),
            _number(value_label, reference, value_column, of_entity=entity_label),
        ]
        if percent_column is not None:
            share = f"{value_label} share"
            found.append(
                _number(share, reference, percent_column, percent=True, of_entity=entity_label)
            )
        return found

    return facts


#: the row limit of the top-n reference queries
TOP_N = 10


def _tie_cut_off(reference: Reference, tied: Sequence[int], limit: int = TOP_N) -> bool:
    """Whether a tie at the top may go on past the ``LIMIT`` of the reference query.

    When every one of the ``limit`` rows ties with the first, more entities may share the top
    value than the result shows: naming one of those is as correct, so which entity is the
    top one (and its own figures) cannot be required, only the top value.
    """
    return len(tied) == len(reference.rows) >= limit


def _row_where(reference: Reference, column: str, value: Any) -> int:
    for index, cell in enumerate(reference.column(column)):
        if cell == value:
            return index
    raise ValueError(f"no row with {column} = {value!r} in the reference result")


def _month(label: str, reference: Reference, column: str, rows: Sequence[int]) -> Fact:
    """The month of ``rows`` (``YYYY-MM``), knowing the result's other months."""
    chosen = {str(reference.value(column, index)) for index in rows}
    spellings = [s for month in sorted(chosen) for s in month_spellings(month)]
    others = [
        s for month in map(str, reference.column(column)) if month not in chosen
        for s in month_spellings(month)
    ]  # fmt: skip
    return entity_fact(label, *spellings, others=others)


def _max_rows(reference: Reference, column: str) -> list[int]:
    values = reference.column(column)
    best = max(values)
    return [i for i, v in enumerate(values) if v == best]


# --- the questions ---------------------------------------------------------------------------


def _humira_ca_top10(ref: Reference) -> list[Fact]:
    tied = _tied_top(ref, "rx_count")
    known = not _tie_cut_off(ref, tied)
    npi = "top prescriber NPI"
    return [
        _entity(npi, ref, "PRESCRIBER_NPI_NBR", tied, required=known),
        # with a tie past the limit, the top prescriber may be one the result does not hold
        _number(
            "top prescriber's prescriptions", ref, "rx_count", of_entity=npi if known else None
        ),
        number_fact("total prescriptions of the top 10", sum(ref.column("rx_count"))),
    ]


def _ozempic_monthly(ref: Reference) -> list[Fact]:
    peaks = _max_rows(ref, "fills")
    return [
        _month("peak month", ref, "month", peaks),
        _number("fills in the peak month", ref, "fills", peaks[:1], of_entity="peak month"),
    ]


def _ozempic_growth(ref: Reference) -> list[Fact]:
    if ref.value("growth_pct") is None:  # no fills in 2023: no growth rate, only the counts
        return [
            _number("fills in 2023", ref, "fills_2023"),
            _number("fills in 2024", ref, "fills_2024"),
        ]
    return [
        _number("growth 2023 to 2024", ref, "growth_pct", percent=True),
        _number("fills in 2023", ref, "fills_2023", required=False),
        _number("fills in 2024", ref, "fills_2024", required=False),
    ]


def _humira_change(ref: Reference) -> list[Fact]:
    facts = [
        _number("fills in January 2023", ref, "jan_2023"),
        _number("fills in December 2024", ref, "dec_2024"),
    ]
    if ref.value("change_pct") is not None:  # none in January 2023: no percentage change
        facts.append(_number("change", ref, "change_pct", percent=True, required=False))
    return facts


def _condition_costs(ref: Reference) -> list[Fact]:
    tied = _tied_top(ref, "total_charges")
    top = "condition with the highest charges"
    return [
        _entity(top, ref, "condition_label", tied, condition_spellings, CONDITION_LABELS),
        # the question asks which condition and its average, not how much its total is
        _number("its total charges", ref, "total_charges", required=False, of_entity=top),
        _number("its average charge per claim", ref, "avg_charge", of_entity=top),
    ]


def _nature_breakdown(ref: Reference) -> list[Fact]:
    by_amount = _max_rows(ref, "total_amount")
    # "payments" counts a category's records; a record may hold several payments (its
    # number_of_payments), and counting those is as good a reading of "most frequent"
    by_records = _max_rows(ref, "payments")
    by_payments = _max_rows(ref, "number_of_payments")
    counts = [ref.value("payments", by_records[0]), ref.value("number_of_payments", by_payments[0])]
    largest, frequent = "largest category by amount", "most frequent category"
    return [
        _entity(largest, ref, "nature_of_payment", by_amount, nature_spellings),
        _number("its total amount", ref, "total_amount", by_amount[:1], of_entity=largest),
        _entity(frequent, ref, "nature_of_payment", by_records + by_payments, nature_spellings),
        number_fact("its number of payments", counts, of_entity=frequent),
    ]


def _no_humira_in_california() -> list[Fact]:
    return [number_fact("HUMIRA prescriptions in California", 0)]


def _no_jardiance_payments() -> list[Fact]:
    return [number_fact("total JARDIANCE payments to its prescribers", 0)]


def _jardiance_payments(ref: Reference) -> list[Fact]:
    tied = _tied_top(ref, "total_paid")
    top = "prescriber paid the most"
    return [
        number_fact("total JARDIANCE payments to its prescribers", sum(ref.column("total_paid"))),
        _entity(top, ref, "npi_number", tied),
        _number("their JARDIANCE payments", ref, "total_paid", of_entity=top),
    ]


def _afib_cardiologists(ref: Reference) -> list[Fact]:
    tied = _tied_top(ref, "afib_patients")
    known = not _tie_cut_off(ref, tied)
    top = "cardiologist with the most AFib patients"
    theirs = top if known else None  # past the limit, the top one may be outside the result
    return [
        _entity(top, ref, "npi_number", tied, required=known),
        _number("their AFib patients", ref, "afib_patients", of_entity=theirs),
        _number("their ELIQUIS prescriptions", ref, "eliquis_rx", tied, required=known,
                of_entity=theirs),
        _number("their ELIQUIS-related payments", ref, "eliquis_payments", tied,
                required=known, of_entity=theirs),
    ]  # fmt: skip


def _days_supply(ref: Reference) -> list[Fact]:
    return [
        _number("average days supply", ref, "avg_days_supply"),
        _number("share of 90-day fills", ref, "pct_90_day", percent=True),
    ]


def _keytruda_counts(ref: Reference) -> list[Fact]:
    return [
        _number("distinct KEYTRUDA patients", ref, "patients"),
        _number("distinct KEYTRUDA prescribers", ref, "prescribers"),
    ]


def _medicare_share(ref: Reference) -> list[Fact]:
    return [
        _number("Medicare share of claims", ref, "pct_claims", percent=True),
        _number("Medicare share of paid dollars", ref, "pct_paid", percent=True),
    ]


def _quarters(ref: Reference) -> list[Fact]:
    peaks = _max_rows(ref, "claims")
    spellings: list[str] = []
    others: list[str] = []
    for index, quarter in enumerate(ref.column("quarter")):
        (spellings if index in peaks else others).extend(quarter_spellings(2024, int(quarter)))
    top = "busiest quarter of 2024"
    return [
        entity_fact(top, *spellings, others=others),
        _number("claims in that quarter", ref, "claims", peaks[:1], of_entity=top),
    ]


def _place_costs(ref: Reference) -> list[Fact]:
    inpatient = _row_where(ref, "PLACE_OF_SERVICE", "Inpatient hospital")
    office = _row_where(ref, "PLACE_OF_SERVICE", "Office")
    places = [str(place) for place in ref.column("PLACE_OF_SERVICE")]
    # the answer says which charge is which: each is stated with its place of service
    return [
        entity_fact("inpatient place of service", *_PLACE_EXTRA["Inpatient hospital"],
                    others=[p for p in places if p != "Inpatient hospital"]),
        _number("average inpatient charge", ref, "avg_charge", [inpatient],
                of_entity="inpatient place of service"),
        entity_fact("office place of service", *_PLACE_EXTRA["Office"],
                    others=[p for p in places if p != "Office"]),
        _number("average office charge", ref, "avg_charge", [office],
                of_entity="office place of service"),
    ]  # fmt: skip


def _top_humira_prescriber(ref: Reference) -> list[Fact]:
    tied = _tied_top(ref, "humira_rx")
    known = not _tie_cut_off(ref, tied)
    top = "top HUMIRA prescriber NPI"
    theirs = top if known else None  # past the limit, the top one may be outside the result
    return [
        _entity(top, ref, "npi_number", tied, required=known),
        # not asked for, but the only fact left to require when the top is not known
        _number("their HUMIRA prescriptions", ref, "humira_rx", required=not known,
                of_entity=theirs),
        _entity("their specialty", ref, "specialty", tied, specialty_spellings, _SPECIALTY_NAMES,
                required=known),
        _entity("their last name", ref, "last_name", tied, required=known),
        _number("their HUMIRA-related payments", ref, "humira_payments", tied, required=known,
                of_entity=theirs),
    ]  # fmt: skip


def _unpaid_prescribers(ref: Reference) -> list[Fact]:
    return [
        _number("ELIQUIS prescribers without ELIQUIS payments", ref, "unpaid_prescribers"),
        _number("ELIQUIS prescribers in total", ref, "prescribers"),
    ]


def _oncologists_keytruda(ref: Reference) -> list[Fact]:
    return [
        _number("oncologists prescribing KEYTRUDA", ref, "oncologists"),
        _number("their KEYTRUDA claims", ref, "claims"),
    ]


def _t2d_monthly(ref: Reference) -> list[Fact]:
    peaks = _max_rows(ref, "claims")
    top = "month with the most type 2 diabetes claims"
    return [
        _month(top, ref, "month", peaks),
        _number("claims in that month", ref, "claims", peaks[:1], of_entity=top),
    ]


def _summary(ref: Reference) -> list[Fact]:
    return [
        _number("pharmacy claims", ref, "claims"),
        _number("distinct patients", ref, "patients"),
        _number("distinct prescribers", ref, "prescribers"),
    ]


def _ozempic_payments_effect(ref: Reference) -> list[Fact]:
    groups = ref.column("received_payments")
    facts: list[Fact] = []
    if True in groups:
        paid = _row_where(ref, "received_payments", True)
        facts.append(
            _number("average OZEMPIC fills, prescribers with payments", ref, "avg_fills", [paid])
        )
    else:  # small data: no OZEMPIC prescriber was paid, so there is nothing to compare with
        facts.append(number_fact("OZEMPIC prescribers with OZEMPIC payments", 0))
    if False in groups:
        unpaid = _row_where(ref, "received_payments", False)
        facts.append(
            _number("average OZEMPIC fills, prescribers without", ref, "avg_fills", [unpaid])
        )
    else:
        facts.append(number_fact("OZEMPIC prescribers without OZEMPIC payments", 0))
    return facts


def _ra_humira(ref: Reference) -> list[Fact]:
    return [
        _number("RA patients who filled HUMIRA", ref, "ra_patients_on_humira"),
        _number("RA patients in total", ref, "ra_patients", required=False),
    ]


def _derm_humira_share(ref: Reference) -> list[Fact]:
    return [_number("HUMIRA share of dermatologists' prescriptions", ref, "pct", percent=True)]


_HUMIRA_SPECIALTIES = top_facts(
    "top HUMIRA specialty", "specialty", "its HUMIRA prescriptions", "rx_count",
    specialty_spellings, percent_column="pct", known=_SPECIALTY_NAMES,
)  # fmt: skip

GOLDEN_QUESTIONS: tuple[GoldenQuestion, ...] = (
    GoldenQuestion(
        "humira_ca_top10",
        "Find the top 10 prescribers of HUMIRA in California.",
        """
        SELECT PRESCRIBER_NPI_NBR, COUNT(*) AS rx_count
        FROM RX_CLAIMS
        WHERE NDC_DRUG_NM = 'HUMIRA' AND PRESCRIBER_NPI_STATE_CD = 'CA'
        GROUP BY PRESCRIBER_NPI_NBR
        ORDER BY rx_count DESC, PRESCRIBER_NPI_NBR
        LIMIT 10""",
        _humira_ca_top10,
        ("RX_CLAIMS",),
        ("top-n", "guide"),
        ("PRESCRIBER_NPI_NBR", "rx_count"),
        empty_facts=_no_humira_in_california,
    ),
    GoldenQuestion(
        "humira_specialties",
        "Which prescriber specialties write the most HUMIRA prescriptions? "
        "Give each specialty's share of HUMIRA claims.",
        """
        SELECT b.specialty, COUNT(*) AS rx_count,
               100.0 * COUNT(*) / SUM(COUNT(*)) OVER () AS pct
        FROM RX_CLAIMS r JOIN PROVIDERS_BIO b ON b.npi_number = r.PRESCRIBER_NPI_NBR
        WHERE r.NDC_DRUG_NM = 'HUMIRA'
        GROUP BY b.specialty
        ORDER BY rx_count DESC, b.specialty""",
        _HUMIRA_SPECIALTIES,
        ("RX_CLAIMS", "PROVIDERS_BIO"),
        ("join", "share"),
        ("specialty", "rx_count"),
    ),
    GoldenQuestion(
        "payments_by_specialty",
        "What is the total amount of industry payments received by providers in each "
        "specialty? Which specialty received the most?",
        """
        SELECT b.specialty, SUM(p.total_payment_amount) AS total_paid, COUNT(*) AS payments
        FROM PROVIDER_PAYMENTS p JOIN PROVIDERS_BIO b ON b.npi_number = p.npi_number
        GROUP BY b.specialty
        ORDER BY total_paid DESC, b.specialty""",
        top_facts(
            "specialty paid the most",
            "specialty",
            "its total payments",
            "total_paid",
            specialty_spellings,
            known=_SPECIALTY_NAMES,
        ),
        ("PROVIDER_PAYMENTS", "PROVIDERS_BIO"),
        ("join", "payments"),
        ("specialty", "total_paid"),
    ),
    GoldenQuestion(
        "ozempic_monthly",
        "How many OZEMPIC prescriptions were filled each month? Which month had the most fills?",
        """
        SELECT strftime(SERVICE_DATE_DD, '%Y-%m') AS month, COUNT(*) AS fills
        FROM RX_CLAIMS
        WHERE NDC_DRUG_NM = 'OZEMPIC'
        GROUP BY month
        ORDER BY month""",
        _ozempic_monthly,
        ("RX_CLAIMS",),
        ("trend",),
        ("month", "fills"),
    ),
    GoldenQuestion(
        "ozempic_growth",
        "By what percentage did the number of OZEMPIC fills grow from 2023 to 2024?",
        """
        SELECT fills_2023, fills_2024,
               100.0 * (fills_2024 - fills_2023) / NULLIF(fills_2023, 0) AS growth_pct
        FROM (
            SELECT COUNT(*) FILTER (WHERE year(SERVICE_DATE_DD) = 2023) AS fills_2023,
                   COUNT(*) FILTER (WHERE year(SERVICE_DATE_DD) = 2024) AS fills_2024
            FROM RX_CLAIMS
            WHERE NDC_DRUG_NM = 'OZEMPIC'
        )""",
        _ozempic_growth,
        ("RX_CLAIMS",),
        ("trend",),
    ),
    GoldenQuestion(
        "humira_change",
        "How did HUMIRA's monthly fill volume change between January 2023 and December 2024?",
        """
        SELECT jan_2023, dec_2024,
               100.0 * (dec_2024 - jan_2023) / NULLIF(jan_2023, 0) AS change_pct
        FROM (
            SELECT COUNT(*) FILTER (WHERE SERVICE_DATE_DD BETWEEN DATE '2023-01-01'
                                                          AND DATE '2023-01-31') AS jan_2023,
                   COUNT(*) FILTER (WHERE SERVICE_DATE_DD BETWEEN DATE '2024-12-01'
                                                          AND DATE '2024-12-31') AS dec_2024
            FROM RX_CLAIMS
            WHERE NDC_DRUG_NM = 'HUMIRA'
        )""",
        _humira_change,
        ("RX_CLAIMS",),
        ("trend",),
    ),
    GoldenQuestion(
        "condition_costs",
        "Which condition has the highest total medical claim charges, and what is the "
        "average charge per claim for it?",
        """
        SELECT condition_label, COUNT(*) AS claims, SUM(CLAIM_CHARGE_AMT) AS total_charges,
               ROUND(AVG(CLAIM_CHARGE_AMT), 2) AS avg_charge
        FROM MED_CLAIMS
        GROUP BY condition_label
        ORDER BY total_charges DESC, condition_label""",
        _condition_costs,
        ("MED_CLAIMS",),
        ("costs",),
        ("condition_label", "total_charges"),
    ),
    GoldenQuestion(
        "eliquis_top_state",
        "Which state has the most ELIQUIS prescriptions, and how many?",
        """
        SELECT PRESCRIBER_NPI_STATE_CD, COUNT(*) AS rx_count
        FROM RX_CLAIMS
        WHERE NDC_DRUG_NM = 'ELIQUIS'
        GROUP BY PRESCRIBER_NPI_STATE_CD
        ORDER BY rx_count DESC, PRESCRIBER_NPI_STATE_CD""",
        top_facts(
            "state",
            "PRESCRIBER_NPI_STATE_CD",
            "its ELIQUIS prescriptions",
            "rx_count",
            state_spellings,
            known=tuple(STATE_NAMES),
        ),
        ("RX_CLAIMS",),
        ("top-n", "geography"),
        ("PRESCRIBER_NPI_STATE_CD", "rx_count"),
    ),
    GoldenQuestion(
        "top_drug_spend",
        "Which drug has the highest total paid amount across all pharmacy claims, and how "
        "much was paid for it?",
        """
        SELECT NDC_DRUG_NM, SUM(PAID_AMT) AS total_paid, COUNT(*) AS claims
        FROM RX_CLAIMS
        GROUP BY NDC_DRUG_NM
        ORDER BY total_paid DESC, NDC_DRUG_NM""",
        top_facts(
            "drug",
            "NDC_DRUG_NM",
            "its total paid amount",
            "total_paid",
            drug_spellings,
            known=_DRUG_NAMES,
        ),
        ("RX_CLAIMS",),
        ("costs", "top-n"),
        ("NDC_DRUG_NM", "total_paid"),
    ),
    GoldenQuestion(
        "top_manufacturer_payments",
        "Which manufacturer made the largest total payments to providers, and how much?",
        """
        SELECT manufacturer_name, SUM(total_payment_amount) AS total_paid, COUNT(*) AS payments
        FROM PROVIDER_PAYMENTS
        GROUP BY manufacturer_name
        ORDER BY total_paid DESC, manufacturer_name""",
        top_facts(
            "manufacturer",
            "manufacturer_name",
            "its total payments",
            "total_paid",
            manufacturer_spellings,
            known=_MANUFACTURERS,
        ),
        ("PROVIDER_PAYMENTS",),
        ("payments", "top-n"),
        ("manufacturer_name", "total_paid"),
    ),
    GoldenQuestion(
        "payment_natures",
        "Break down provider payments by nature of payment. Which category has the largest "
        "total amount, and which is the most frequent?",
        """
        SELECT nature_of_payment, COUNT(*) AS payments, SUM(total_payment_amount) AS total_amount,
               SUM(number_of_payments) AS number_of_payments
        FROM PROVIDER_PAYMENTS
        GROUP BY nature_of_payment
        ORDER BY total_amount DESC, nature_of_payment""",
        _nature_breakdown,
        ("PROVIDER_PAYMENTS",),
        ("payments",),
        ("nature_of_payment", "total_amount"),  # a count may be of records or of payments
    ),
    GoldenQuestion(
        "jardiance_prescriber_payments",
        "How much did providers who prescribed JARDIANCE receive in JARDIANCE-related "
        "payments in total, and which of them received the most?",
        """
        WITH prescribers AS (
            SELECT DISTINCT PRESCRIBER_NPI_NBR AS npi FROM RX_CLAIMS
            WHERE NDC_DRUG_NM = 'JARDIANCE'
        )
        SELECT p.npi_number, SUM(p.total_payment_amount) AS total_paid
        FROM PROVIDER_PAYMENTS p JOIN prescribers ON prescribers.npi = p.npi_number
        WHERE p.associated_product = 'JARDIANCE'
        GROUP BY p.npi_number
        ORDER BY total_paid DESC, p.npi_number""",
        _jardiance_payments,
        ("RX_CLAIMS", "PROVIDER_PAYMENTS"),
        ("join", "payments"),
        ("npi_number", "total_paid"),
        empty_facts=_no_jardiance_payments,
    ),
    GoldenQuestion(
        "afib_cardiologists",
        "Which cardiologist treated the most distinct atrial fibrillation patients in the "
        "medical claims? How many ELIQUIS prescriptions did they write, and how much did they "
        "receive in ELIQUIS-related payments?",
        """
        WITH afib AS (
            SELECT PRIMARY_HCP AS npi, COUNT(DISTINCT PATIENT_ID) AS afib_patients
            FROM MED_CLAIMS WHERE condition_label = 'Atrial fibrillation' GROUP BY PRIMARY_HCP
        ),
        rx AS (
            SELECT PRESCRIBER_NPI_NBR AS npi, COUNT(*) AS eliquis_rx
            FROM RX_CLAIMS WHERE NDC_DRUG_NM = 'ELIQUIS' GROUP BY PRESCRIBER_NPI_NBR
        ),
        pay AS (
            SELECT npi_number AS npi, SUM(total_payment_amount) AS eliquis_payments
            FROM PROVIDER_PAYMENTS WHERE associated_product = 'ELIQUIS' GROUP BY npi_number
        )
        SELECT b.npi_number, b.first_name, b.last_name, b.state, afib.afib_patients,
               COALESCE(rx.eliquis_rx, 0) AS eliquis_rx,
               COALESCE(pay.eliquis_payments, 0) AS eliquis_payments
        FROM PROVIDERS_BIO b
        JOIN afib ON afib.npi = b.npi_number
        LEFT JOIN rx ON rx.npi = b.npi_number
        LEFT JOIN pay ON pay.npi = b.npi_number
        WHERE b.specialty = 'Cardiology'
        ORDER BY afib.afib_patients DESC, b.npi_number
        LIMIT 10""",
        _afib_cardiologists,
        ("PROVIDERS_BIO", "MED_CLAIMS", "RX_CLAIMS", "PROVIDER_PAYMENTS"),
        ("join", "four-table"),
        ("npi_number", "afib_patients", "eliquis_rx"),
    ),
    GoldenQuestion(
        "eliquis_days_supply",
        "What is the average days supply of ELIQUIS fills, and what percentage of ELIQUIS "
        "fills are 90-day supplies?",
        """
        SELECT AVG(DAYS_SUPPLY_CNT) AS avg_days_supply,
               100.0 * COUNT(*) FILTER (WHERE DAYS_SUPPLY_CNT >= 90) / COUNT(*) AS pct_90_day
        FROM RX_CLAIMS
        WHERE NDC_DRUG_NM = 'ELIQUIS'""",
        _days_supply,
        ("RX_CLAIMS",),
        ("utilization",),
    ),
    GoldenQuestion(
        "keytruda_reach",
        "How many distinct patients filled KEYTRUDA, and how many distinct prescribers wrote it?",
        """
        SELECT COUNT(DISTINCT PATIENT_ID) AS patients,
               COUNT(DISTINCT PRESCRIBER_NPI_NBR) AS prescribers
        FROM RX_CLAIMS
        WHERE NDC_DRUG_NM = 'KEYTRUDA'""",
        _keytruda_counts,
        ("RX_CLAIMS",),
        ("counts",),
    ),
    GoldenQuestion(
        "medicare_share",
        "What share of pharmacy claims were paid by Medicare, and what share of total paid "
        "dollars did Medicare account for?",
        """
        SELECT 100.0 * COUNT(*) FILTER (WHERE PAYER_TYPE = 'Medicare') / COUNT(*) AS pct_claims,
               100.0 * SUM(PAID_AMT) FILTER (WHERE PAYER_TYPE = 'Medicare') / SUM(PAID_AMT)
                   AS pct_paid
        FROM RX_CLAIMS""",
        _medicare_share,
        ("RX_CLAIMS",),
        ("share", "payer"),
    ),
    GoldenQuestion(
        "providers_by_state",
        "Which state has the most providers in the provider directory, and how many?",
        """
        SELECT state, COUNT(*) AS providers
        FROM PROVIDERS_BIO
        GROUP BY state
        ORDER BY providers DESC, state""",
        top_facts(
            "state",
            "state",
            "its providers",
            "providers",
            state_spellings,
            known=tuple(STATE_NAMES),
        ),
        ("PROVIDERS_BIO",),
        ("geography",),
        ("state", "providers"),
    ),
    GoldenQuestion(
        "experience_by_specialty",
        "Which specialty has the highest average years in practice, and what is that average?",
        """
        SELECT specialty, AVG(years_in_practice) AS avg_years, COUNT(*) AS providers
        FROM PROVIDERS_BIO
        GROUP BY specialty
        ORDER BY avg_years DESC, specialty""",
        top_facts(
            "specialty",
            "specialty",
            "its average years in practice",
            "avg_years",
            specialty_spellings,
            known=_SPECIALTY_NAMES,
        ),
        ("PROVIDERS_BIO",),
        ("providers",),
        ("specialty", "avg_years"),
    ),
    GoldenQuestion(
        "busiest_quarter_2024",
        "Which quarter of 2024 had the most pharmacy claims, and how many claims were filled "
        "in it?",
        """
        SELECT quarter(SERVICE_DATE_DD) AS quarter, COUNT(*) AS claims
        FROM RX_CLAIMS
        WHERE year(SERVICE_DATE_DD) = 2024
        GROUP BY quarter
        ORDER BY quarter""",
        _quarters,
        ("RX_CLAIMS",),
        ("trend",),
        ("quarter", "claims"),
    ),
    GoldenQuestion(
        "place_of_service_costs",
        "What is the average charge of inpatient hospital medical claims, compared with "
        "office visits?",
        """
        SELECT PLACE_OF_SERVICE, COUNT(*) AS claims, ROUND(AVG(CLAIM_CHARGE_AMT), 2) AS avg_charge
        FROM MED_CLAIMS
        GROUP BY PLACE_OF_SERVICE
        ORDER BY avg_charge DESC""",
        _place_costs,
        ("MED_CLAIMS",),
        ("costs",),
        ("PLACE_OF_SERVICE", "avg_charge"),
    ),
    GoldenQuestion(
        "texas_conditions",
        "What is the most common condition treated by providers in Texas, by number of "
        "medical claims?",
        """
        SELECT condition_label, COUNT(*) AS claims
        FROM MED_CLAIMS
        WHERE SERVICE_STATE_CD = 'TX'
        GROUP BY condition_label
        ORDER BY claims DESC, condition_label""",
        top_facts(
            "condition",
            "condition_label",
            "its claims",
            "claims",
            condition_spellings,
            known=CONDITION_LABELS,
        ),
        ("MED_CLAIMS",),
        ("geography", "top-n"),
        ("condition_label", "claims"),
    ),
    GoldenQuestion(
        "dermatology_humira_share",
        "What percentage of dermatologists' prescriptions are for HUMIRA?",
        """
        SELECT 100.0 * COUNT(*) FILTER (WHERE r.NDC_DRUG_NM = 'HUMIRA') / COUNT(*) AS pct,
               COUNT(*) FILTER (WHERE r.NDC_DRUG_NM = 'HUMIRA') AS humira_rx,
               COUNT(*) AS all_rx
        FROM RX_CLAIMS r JOIN PROVIDERS_BIO b ON b.npi_number = r.PRESCRIBER_NPI_NBR
        WHERE b.specialty = 'Dermatology'""",
        _derm_humira_share,
        ("RX_CLAIMS", "PROVIDERS_BIO"),
        ("join", "share"),
    ),
    GoldenQuestion(
        "top_humira_prescriber",
        "Who is the top HUMIRA prescriber nationwide? Give their NPI, name and specialty, and "
        "how much they received in HUMIRA-related payments.",
        """
        WITH rx AS (
            SELECT PRESCRIBER_NPI_NBR AS npi, COUNT(*) AS humira_rx
            FROM RX_CLAIMS WHERE NDC_DRUG_NM = 'HUMIRA' GROUP BY PRESCRIBER_NPI_NBR
        ),
        pay AS (
            SELECT npi_number AS npi, SUM(total_payment_amount) AS humira_payments
            FROM PROVIDER_PAYMENTS WHERE associated_product = 'HUMIRA' GROUP BY npi_number
        )
        SELECT b.npi_number, b.first_name, b.last_name, b.specialty, b.state, rx.humira_rx,
               COALESCE(pay.humira_payments, 0) AS humira_payments
        FROM rx
        JOIN PROVIDERS_BIO b ON b.npi_number = rx.npi
        LEFT JOIN pay ON pay.npi = rx.npi
        ORDER BY rx.humira_rx DESC, b.npi_number
        LIMIT 10""",
        _top_humira_prescriber,
        ("RX_CLAIMS", "PROVIDERS_BIO", "PROVIDER_PAYMENTS"),
        ("join", "top-n", "payments"),
        ("npi_number", "humira_rx"),
    ),
    GoldenQuestion(
        "eliquis_unpaid_prescribers",
        "How many ELIQUIS prescribers received no ELIQUIS-related payments, out of how many "
        "ELIQUIS prescribers in total?",
        """
        WITH prescribers AS (
            SELECT DISTINCT PRESCRIBER_NPI_NBR AS npi FROM RX_CLAIMS
            WHERE NDC_DRUG_NM = 'ELIQUIS'
        ),
        paid AS (
            SELECT DISTINCT npi_number AS npi FROM PROVIDER_PAYMENTS
            WHERE associated_product = 'ELIQUIS'
        )
        SELECT COUNT(*) FILTER (WHERE paid.npi IS NULL) AS unpaid_prescribers,
               COUNT(*) AS prescribers
        FROM prescribers LEFT JOIN paid ON paid.npi = prescribers.npi""",
        _unpaid_prescribers,
        ("RX_CLAIMS", "PROVIDER_PAYMENTS"),
        ("join", "payments"),
    ),
    GoldenQuestion(
        "oncologists_keytruda",
        "How many oncologists prescribed KEYTRUDA, and how many KEYTRUDA claims did they write "
        "in total?",
        """
        SELECT COUNT(DISTINCT r.PRESCRIBER_NPI_NBR) AS oncologists, COUNT(*) AS claims
        FROM RX_CLAIMS r JOIN PROVIDERS_BIO b ON b.npi_number = r.PRESCRIBER_NPI_NBR
        WHERE r.NDC_DRUG_NM = 'KEYTRUDA' AND b.specialty = 'Hematology/Oncology'""",
        _oncologists_keytruda,
        ("RX_CLAIMS", "PROVIDERS_BIO"),
        ("join", "counts"),
    ),
    GoldenQuestion(
        "jardiance_by_payer",
        "Which payer type has the highest average paid amount per JARDIANCE claim, and what "
        "is that average?",
        """
        SELECT PAYER_TYPE, ROUND(AVG(PAID_AMT), 2) AS avg_paid, COUNT(*) AS claims
        FROM RX_CLAIMS
        WHERE NDC_DRUG_NM = 'JARDIANCE'
        GROUP BY PAYER_TYPE
        ORDER BY avg_paid DESC, PAYER_TYPE""",
        top_facts("payer type", "PAYER_TYPE", "its average paid amount", "avg_paid"),
        ("RX_CLAIMS",),
        ("costs", "payer"),
        ("PAYER_TYPE", "avg_paid"),
    ),
    GoldenQuestion(
        "t2d_peak_month",
        "In which month were the most type 2 diabetes medical claims filed, and how many?",
        """
        SELECT strftime(STATEMENT_FROM_DD, '%Y-%m') AS month, COUNT(*) AS claims
        FROM MED_CLAIMS
        WHERE condition_label = 'Type 2 diabetes'
        GROUP BY month
        ORDER BY month""",
        _t2d_monthly,
        ("MED_CLAIMS",),
        ("trend",),
        ("month", "claims"),
    ),
    GoldenQuestion(
        "data_summary",
        "How many pharmacy claims, distinct patients and distinct prescribers are in the "
        "pharmacy claims data?",
        """
        SELECT COUNT(*) AS claims, COUNT(DISTINCT PATIENT_ID) AS patients,
               COUNT(DISTINCT PRESCRIBER_NPI_NBR) AS prescribers
        FROM RX_CLAIMS""",
        _summary,
        ("RX_CLAIMS",),
        ("counts",),
    ),
    GoldenQuestion(
        "humira_schools",
        "Which school trained the most HUMIRA prescribers, and how many of them?",
        """
        SELECT b.education, COUNT(DISTINCT b.npi_number) AS prescribers
        FROM RX_CLAIMS r JOIN PROVIDERS_BIO b ON b.npi_number = r.PRESCRIBER_NPI_NBR
        WHERE r.NDC_DRUG_NM = 'HUMIRA'
        GROUP BY b.education
        ORDER BY prescribers DESC, b.education""",
        top_facts(
            "school",
            "education",
            "its HUMIRA prescribers",
            "prescribers",
            school_spellings,
            known=SCHOOLS,
        ),
        ("RX_CLAIMS", "PROVIDERS_BIO"),
        ("join", "providers"),
        ("education", "prescribers"),
    ),
    GoldenQuestion(
        "charge_by_specialty",
        "Which specialty has the highest average medical claim charge, and what is it?",
        """
        SELECT b.specialty, ROUND(AVG(m.CLAIM_CHARGE_AMT), 2) AS avg_charge, COUNT(*) AS claims
        FROM MED_CLAIMS m JOIN PROVIDERS_BIO b ON b.npi_number = m.PRIMARY_HCP
        GROUP BY b.specialty
        ORDER BY avg_charge DESC, b.specialty""",
        top_facts(
            "specialty",
            "specialty",
            "its average charge",
            "avg_charge",
            specialty_spellings,
            known=_SPECIALTY_NAMES,
        ),
        ("MED_CLAIMS", "PROVIDERS_BIO"),
        ("join", "costs"),
        ("specialty", "avg_charge"),
    ),
    GoldenQuestion(
        "ozempic_payments_effect",
        "Do prescribers who received OZEMPIC-related payments fill more OZEMPIC? Compare the "
        "average OZEMPIC fills per prescriber with and without such payments.",
        """
        WITH rx AS (
            SELECT PRESCRIBER_NPI_NBR AS npi, COUNT(*) AS fills
            FROM RX_CLAIMS WHERE NDC_DRUG_NM = 'OZEMPIC' GROUP BY PRESCRIBER_NPI_NBR
        ),
        paid AS (
            SELECT DISTINCT npi_number AS npi FROM PROVIDER_PAYMENTS
            WHERE associated_product = 'OZEMPIC'
        )
        SELECT paid.npi IS NOT NULL AS received_payments, COUNT(*) AS prescribers,
               AVG(rx.fills) AS avg_fills
        FROM rx LEFT JOIN paid ON paid.npi = rx.npi
        GROUP BY received_payments
        ORDER BY received_payments DESC""",
        _ozempic_payments_effect,
        ("RX_CLAIMS", "PROVIDER_PAYMENTS"),
        ("join", "payments"),
        ("received_payments", "avg_fills"),
    ),
    GoldenQuestion(
        "ra_patients_on_humira",
        "How many patients with rheumatoid arthritis medical claims also filled HUMIRA?",
        """
        WITH ra AS (
            SELECT DISTINCT PATIENT_ID FROM MED_CLAIMS
            WHERE condition_label = 'Rheumatoid arthritis'
        ),
        humira AS (
            SELECT DISTINCT PATIENT_ID FROM RX_CLAIMS WHERE NDC_DRUG_NM = 'HUMIRA'
        )
        SELECT COUNT(humira.PATIENT_ID) AS ra_patients_on_humira, COUNT(*) AS ra_patients
        FROM ra LEFT JOIN humira ON humira.PATIENT_ID = ra.PATIENT_ID""",
        _ra_humira,
        ("MED_CLAIMS", "RX_CLAIMS"),
        ("join", "patients"),
    ),
)

_BY_ID = {question.id: question for question in GOLDEN_QUESTIONS}


def get_question(question_id: str) -> GoldenQuestion:
    """The golden question with this id."""
    try:
        return _BY_ID[question_id]
    except KeyError:
        known = ", ".join(sorted(_BY_ID))
        raise KeyError(f"no golden question {question_id!r}; known ids: {known}") from None


__all__ = [
    "GOLDEN_QUESTIONS",
    "GoldenQuestion",
    "condition_spellings",
    "drug_spellings",
    "get_question",
    "manufacturer_spellings",
    "nature_spellings",
    "school_spellings",
    "specialty_spellings",
    "state_spellings",
    "top_facts",
]
