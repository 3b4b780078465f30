"""Synthetic healthcare claims: a deterministic generator of the four tables of the design guide.

The healthcare research agent needs data that looks like a real claims warehouse (drug names,
prescriber specialties, states, skew, seasonality, joinable keys) so that its questions have
interesting answers, while containing no real person's data. Everything here is synthetic:

- NPIs are random 10-digit numbers that pass the Luhn check real NPIs use (prefix 80840),
  but begin with 9: CMS issues NPIs beginning with 1 or 2 only, so no NPI here can be a real
  provider's, whose name would then stand beside synthetic prescribing and payments.
  Provider names are drawn from generic first/last name lists; patients are opaque ids with
  a birth year and a sex, nothing else.
- Drug names, manufacturers and ICD-10 codes are real public product and code names; NDC codes
  use the manufacturers' labeler prefixes with synthetic product codes.

The data is generated inside DuckDB with SQL, not Python loops: every random draw is a hash of
(row number, seed, salt), and a weighted choice is an equality join on a bucket table built from
cumulative weights. So the same seed gives the same rows, and a million pharmacy claims take a
few seconds.

The tables (column names follow the guide; the extra columns are documented in ``TABLES`` and
as DuckDB column comments, so an agent can read them from the database):

- ``RX_CLAIMS``: one row per pharmacy fill.
- ``MED_CLAIMS``: one row per medical claim, with the condition treated.
- ``PROVIDER_PAYMENTS``: industry payments to providers (Open Payments style).
- ``PROVIDERS_BIO``: one row per provider.

``ensure_database()`` builds the file into ``<LOOPWRIGHT_HOME>/data/healthcare/`` on first use
(atomically; a concurrent caller waits for the first and reuses its file) and returns its path.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import itertools
import math
import os
import shutil
import sys
import time
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from loopwright.config import loopwright_home

if TYPE_CHECKING:
    import duckdb

GENERATOR_VERSION = 1
DEFAULT_SEED = 42
DEFAULT_RX_CLAIMS = 200_000
MIN_RX_CLAIMS = 1_000
#: The largest database generated: 10M rx claims take ~20 s and 580 MiB here, so this is
#: ~4 minutes and ~6 GiB; beyond it a typo (an extra zero or three) fills the disk.
MAX_RX_CLAIMS = 100_000_000
#: seeds are 64-bit: the random draws use the seed modulo 2**64
MIN_SEED = -(2**63)
MAX_SEED = 2**63 - 1


class DatabaseBuildError(RuntimeError):
    """The claims database could not be built (a full disk, a data directory that cannot be
    written); nothing is left behind."""


START_DATE = date(2023, 1, 1)
END_DATE = date(2024, 12, 31)

ProgressCallback = Callable[[float, str], None]
"""Called with the fraction done (0.0 to 1.0) and what is being built."""

Trend = Literal["growing_fast", "growing", "flat", "declining"]

# --- the schema --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a generated table: its name, DuckDB type and meaning."""

    name: str
    type: str
    description: str


TABLES: dict[str, tuple[Column, ...]] = {
    "RX_CLAIMS": (
        Column("CLAIM_ID", "VARCHAR", "Pharmacy claim id (one row per fill)"),
        Column("PATIENT_ID", "VARCHAR", "Synthetic patient id (a direct identifier)"),
        Column("PATIENT_BIRTH_YEAR", "SMALLINT", "Patient's year of birth"),
        Column("PATIENT_GENDER_CD", "VARCHAR", "Patient's sex: F or M"),
        Column("PRESCRIBER_NPI_NBR", "VARCHAR", "Prescriber's NPI (joins PROVIDERS_BIO)"),
        Column("PRESCRIBER_NPI_STATE_CD", "VARCHAR", "Prescriber's state, 2-letter code"),
        Column("NDC_CD", "VARCHAR", "National Drug Code, 11 digits"),
        Column("NDC_DRUG_NM", "VARCHAR", "Drug name, upper case (e.g. HUMIRA)"),
        Column("GENERIC_NM", "VARCHAR", "Generic (active ingredient) name"),
        Column("THERAPEUTIC_CLASS", "VARCHAR", "Drug class (e.g. TNF inhibitor)"),
        Column("SERVICE_DATE_DD", "DATE", "Fill date"),
        Column("DISPENSED_QUANTITY_VAL", "DECIMAL(10,2)", "Quantity dispensed (units)"),
        Column("DAYS_SUPPLY_CNT", "INTEGER", "Days of therapy dispensed"),
        Column("PAYER_TYPE", "VARCHAR", "Commercial, Medicare, Medicaid or Cash"),
        Column("PAID_AMT", "DECIMAL(12,2)", "Amount paid for the fill, USD"),
        Column("PATIENT_PAY_AMT", "DECIMAL(12,2)", "Patient's out-of-pocket share, USD"),
    ),
    "MED_CLAIMS": (
        Column("CLAIM_ID", "VARCHAR", "Medical claim id"),
        Column("PATIENT_ID", "VARCHAR", "Synthetic patient id (a direct identifier)"),
        Column("PATIENT_BIRTH_YEAR", "SMALLINT", "Patient's year of birth"),
        Column("PATIENT_GENDER_CD", "VARCHAR", "Patient's sex: F or M"),
        Column("PRIMARY_HCP", "VARCHAR", "NPI of the treating provider (joins PROVIDERS_BIO)"),
        Column("SERVICE_STATE_CD", "VARCHAR", "State where the care was given"),
        Column("condition_label", "VARCHAR", "Diagnosis / condition treated"),
        Column("ICD10_CD", "VARCHAR", "ICD-10-CM code of the condition"),
        Column("PROCEDURE_CD", "VARCHAR", "CPT code of the main service"),
        Column("PLACE_OF_SERVICE", "VARCHAR", "Office, Telehealth, Outpatient hospital, ..."),
        Column("STATEMENT_FROM_DD", "DATE", "Service start date"),
        Column("STATEMENT_TO_DD", "DATE", "Service end date"),
        Column("CLAIM_CHARGE_AMT", "DECIMAL(12,2)", "Billed charge, USD"),
        Column("CLAIM_PAID_AMT", "DECIMAL(12,2)", "Amount paid by the payer, USD"),
        Column("PAYER_TYPE", "VARCHAR", "Commercial, Medicare, Medicaid or Cash"),
    ),
    "PROVIDER_PAYMENTS": (
        Column("payment_id", "VARCHAR", "Payment record id"),
        Column("npi_number", "VARCHAR", "Recipient provider's NPI (joins PROVIDERS_BIO)"),
        Column("recipient_state", "VARCHAR", "Recipient's state, 2-letter code"),
        Column("manufacturer_name", "VARCHAR", "Paying manufacturer"),
        Column("associated_product", "VARCHAR", "Drug the payment relates to (= NDC_DRUG_NM)"),
        Column("nature_of_payment", "VARCHAR", "Food and Beverage, Consulting Fee, ..."),
        Column("form_of_payment", "VARCHAR", "Cash or cash equivalent / In-kind items"),
        Column("total_payment_amount", "DECIMAL(12,2)", "Amount, USD"),
        Column("number_of_payments", "INTEGER", "Payments in this record"),
        Column("payment_date", "DATE", "Date of payment"),
        Column("program_year", "INTEGER", "Reporting year"),
    ),
    "PROVIDERS_BIO": (
        Column("npi_number", "VARCHAR", "National Provider Identifier (10 digits)"),
        Column("first_name", "VARCHAR", "Provider's first name (synthetic)"),
        Column("last_name", "VARCHAR", "Provider's last name (synthetic)"),
        Column("credential", "VARCHAR", "MD, DO, NP or PA-C"),
        Column("gender", "VARCHAR", "Provider's sex: F or M"),
        Column("specialty", "VARCHAR", "Medical specialty"),
        Column("education", "VARCHAR", "School the provider graduated from"),
        Column("graduation_year", "INTEGER", "Year of graduation"),
        Column("years_in_practice", "INTEGER", "Years in practice as of 2024"),
        Column("state", "VARCHAR", "Practice state, 2-letter code"),
        Column("practice_setting", "VARCHAR", "Private practice, Hospital-employed, ..."),
    ),
}

TABLE_DESCRIPTIONS = {
    "RX_CLAIMS": "Pharmacy claims: one row per prescription fill (synthetic).",
    "MED_CLAIMS": "Medical claims: one row per claim, with the condition treated (synthetic).",
    "PROVIDER_PAYMENTS": "Industry payments to providers, Open Payments style (synthetic).",
    "PROVIDERS_BIO": "Provider directory: one row per NPI (synthetic people).",
}

SCHEMA: dict[str, list[tuple[str, str]]] = {
    table: [(column.name, column.type) for column in columns] for table, columns in TABLES.items()
}
"""``{table: [(column, type)]}``, the shape ``sqlcheck.check_sql`` takes."""

DIRECT_IDENTIFIERS: frozenset[tuple[str, str]] = frozenset(
    {("RX_CLAIMS", "PATIENT_ID"), ("MED_CLAIMS", "PATIENT_ID")}
)
"""Columns that identify a patient on their own (HIPAA's direct identifiers)."""

QUASI_IDENTIFIERS: frozenset[tuple[str, str]] = frozenset(
    {
        ("RX_CLAIMS", "PATIENT_BIRTH_YEAR"),
        ("RX_CLAIMS", "PATIENT_GENDER_CD"),
        ("MED_CLAIMS", "PATIENT_BIRTH_YEAR"),
        ("MED_CLAIMS", "PATIENT_GENDER_CD"),
    }
)
"""Patient attributes that identify only in combination (fine in aggregates)."""

PROVIDER_IDENTIFIERS: frozenset[tuple[str, str]] = frozenset(
    {
        ("RX_CLAIMS", "PRESCRIBER_NPI_NBR"),
        ("MED_CLAIMS", "PRIMARY_HCP"),
        ("PROVIDER_PAYMENTS", "npi_number"),
        ("PROVIDERS_BIO", "npi_number"),
        ("PROVIDERS_BIO", "first_name"),
        ("PROVIDERS_BIO", "last_name"),
    }
)
"""Columns naming a provider: public business identifiers, not patient data."""

# --- the domain --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class State:
    code: str
    name: str
    population_m: float


STATES: tuple[State, ...] = (
    State("CA", "California", 39.5),
    State("TX", "Texas", 29.1),
    State("FL", "Florida", 21.5),
    State("NY", "New York", 20.2),
    State("PA", "Pennsylvania", 13.0),
    State("IL", "Illinois", 12.8),
    State("OH", "Ohio", 11.8),
    State("GA", "Georgia", 10.7),
    State("NC", "North Carolina", 10.4),
    State("MI", "Michigan", 10.1),
    State("NJ", "New Jersey", 9.3),
    State("VA", "Virginia", 8.6),
    State("WA", "Washington", 7.7),
    State("AZ", "Arizona", 7.2),
    State("MA", "Massachusetts", 7.0),
    State("TN", "Tennessee", 6.9),
    State("IN", "Indiana", 6.8),
    State("MD", "Maryland", 6.2),
    State("MO", "Missouri", 6.2),
    State("WI", "Wisconsin", 5.9),
    State("CO", "Colorado", 5.8),
    State("MN", "Minnesota", 5.7),
    State("SC", "South Carolina", 5.1),
    State("AL", "Alabama", 5.0),
    State("LA", "Louisiana", 4.7),
    State("KY", "Kentucky", 4.5),
    State("OR", "Oregon", 4.2),
    State("OK", "Oklahoma", 4.0),
    State("CT", "Connecticut", 3.6),
    State("UT", "Utah", 3.3),
    State("IA", "Iowa", 3.2),
    State("NV", "Nevada", 3.1),
    State("AR", "Arkansas", 3.0),
    State("MS", "Mississippi", 3.0),
    State("KS", "Kansas", 2.9),
    State("NM", "New Mexico", 2.1),
    State("NE", "Nebraska", 2.0),
    State("ID", "Idaho", 1.8),
    State("WV", "West Virginia", 1.8),
    State("HI", "Hawaii", 1.5),
    State("NH", "New Hampshire", 1.4),
    State("ME", "Maine", 1.4),
    State("RI", "Rhode Island", 1.1),
    State("MT", "Montana", 1.1),
    State("DE", "Delaware", 1.0),
    State("SD", "South Dakota", 0.89),
    State("ND", "North Dakota", 0.78),
    State("AK", "Alaska", 0.73),
    State("DC", "District of Columbia", 0.69),
    State("VT", "Vermont", 0.64),
    State("WY", "Wyoming", 0.58),
)

STATE_NAMES: dict[str, str] = {state.code: state.name for state in STATES}


@dataclass(frozen=True, slots=True)
class Drug:
    """A drug as it appears in claims: how it is dosed, priced, trending and promoted."""

    name: str
    generic: str
    drug_class: str
    manufacturer: str
    labeler: str  # the NDC labeler prefix (5 digits)
    trend: Trend
    cycle_days: int  # days one standard fill lasts
    units_per_cycle: float  # units dispensed per standard fill
    unit_price: float  # USD per unit
    allow_90: bool = False  # 90-day fills common (oral maintenance drugs)
    branded: bool = True  # promoted by its manufacturer (appears in payments)


DRUGS: tuple[Drug, ...] = (
    Drug("ELIQUIS", "apixaban", "Anticoagulant", "Bristol-Myers Squibb", "00003",
         "growing", 30, 60, 9.6, allow_90=True),
    Drug("XARELTO", "rivaroxaban", "Anticoagulant", "Janssen Pharmaceuticals", "50458",
         "declining", 30, 30, 18.5, allow_90=True),
    Drug("JARDIANCE", "empagliflozin", "SGLT2 inhibitor", "Boehringer Ingelheim", "00597",
         "growing", 30, 30, 20.1, allow_90=True),
    Drug("FARXIGA", "dapagliflozin", "SGLT2 inhibitor", "AstraZeneca", "00310",
         "growing", 30, 30, 19.4, allow_90=True),
    Drug("OZEMPIC", "semaglutide", "GLP-1 receptor agonist", "Novo Nordisk", "00169",
         "growing_fast", 28, 3, 320.0),
    Drug("MOUNJARO", "tirzepatide", "GIP/GLP-1 receptor agonist", "Eli Lilly", "00002",
         "growing_fast", 28, 4, 260.0),
    Drug("TRULICITY", "dulaglutide", "GLP-1 receptor agonist", "Eli Lilly", "00002",
         "declining", 28, 2, 490.0),
    Drug("JANUVIA", "sitagliptin", "DPP-4 inhibitor", "Merck", "00006",
         "declining", 30, 30, 17.8, allow_90=True),
    Drug("ENTRESTO", "sacubitril/valsartan", "ARNI", "Novartis", "00078",
         "growing", 30, 60, 11.2, allow_90=True),
    Drug("HUMIRA", "adalimumab", "TNF inhibitor", "AbbVie", "00074",
         "declining", 28, 2, 3300.0),
    Drug("ENBREL", "etanercept", "TNF inhibitor", "Amgen", "58406",
         "declining", 28, 4, 1850.0),
    Drug("STELARA", "ustekinumab", "IL-12/23 inhibitor", "Janssen Biotech", "57894",
         "flat", 56, 1, 13600.0),
    Drug("SKYRIZI", "risankizumab", "IL-23 inhibitor", "AbbVie", "00074",
         "growing_fast", 84, 1, 20900.0),
    Drug("DUPIXENT", "dupilumab", "IL-4/IL-13 inhibitor", "Sanofi", "00024",
         "growing", 28, 2, 1800.0),
    Drug("KEYTRUDA", "pembrolizumab", "PD-1 inhibitor", "Merck", "00006",
         "growing", 21, 2, 5700.0),
    Drug("OPDIVO", "nivolumab", "PD-1 inhibitor", "Bristol-Myers Squibb", "00003",
         "flat", 28, 4, 3100.0),
    Drug("IBRANCE", "palbociclib", "CDK4/6 inhibitor", "Pfizer", "00069",
         "declining", 28, 21, 690.0),
    Drug("REVLIMID", "lenalidomide", "Immunomodulator", "Bristol-Myers Squibb", "59572",
         "declining", 28, 21, 880.0),
    Drug("VRAYLAR", "cariprazine", "Atypical antipsychotic", "AbbVie", "61874",
         "growing", 30, 30, 48.0, allow_90=True),
    Drug("REXULTI", "brexpiprazole", "Atypical antipsychotic", "Otsuka", "59148",
         "growing", 30, 30, 47.0, allow_90=True),
    Drug("NURTEC ODT", "rimegepant", "CGRP receptor antagonist", "Pfizer", "72618",
         "growing", 30, 16, 62.0),
    Drug("TRELEGY ELLIPTA", "fluticasone/umeclidinium/vilanterol", "Inhaled triple therapy",
         "GlaxoSmithKline", "00173", "flat", 30, 1, 690.0),
    Drug("BIKTARVY", "bictegravir/emtricitabine/tenofovir alafenamide", "HIV antiretroviral",
         "Gilead Sciences", "61958", "growing", 30, 30, 132.0, allow_90=True),
    Drug("LINZESS", "linaclotide", "GC-C agonist", "AbbVie", "00456",
         "flat", 30, 30, 19.0, allow_90=True),
    Drug("ATORVASTATIN", "atorvastatin calcium", "Statin", "Greenstone", "00093",
         "flat", 30, 30, 0.12, allow_90=True, branded=False),
    Drug("LISINOPRIL", "lisinopril", "ACE inhibitor", "Lupin", "68180",
         "flat", 30, 30, 0.09, allow_90=True, branded=False),
    Drug("AMLODIPINE", "amlodipine besylate", "Calcium channel blocker", "Aurobindo", "65862",
         "flat", 30, 30, 0.08, allow_90=True, branded=False),
    Drug("METFORMIN", "metformin hydrochloride", "Biguanide", "Zydus", "68382",
         "flat", 30, 60, 0.06, allow_90=True, branded=False),
    Drug("LEVOTHYROXINE", "levothyroxine sodium", "Thyroid hormone", "Mylan", "00378",
         "flat", 30, 30, 0.21, allow_90=True, branded=False),
    Drug("SERTRALINE", "sertraline hydrochloride", "SSRI", "Aurobindo", "65862",
         "growing", 30, 30, 0.11, allow_90=True, branded=False),
    Drug("GABAPENTIN", "gabapentin", "Anticonvulsant", "Teva", "00093",
         "flat", 30, 90, 0.07, allow_90=True, branded=False),
    Drug("OMEPRAZOLE", "omeprazole", "Proton pump inhibitor", "Dr. Reddy's", "55111",
         "flat", 30, 30, 0.10, allow_90=True, branded=False),
    Drug("ESTRADIOL", "estradiol", "Estrogen", "Teva", "00093",
         "flat", 30, 30, 0.25, allow_90=True, branded=False),
)  # fmt: skip

DRUG_NAMES: tuple[str, ...] = tuple(drug.name for drug in DRUGS)
BRANDED_DRUGS: tuple[str, ...] = tuple(drug.name for drug in DRUGS if drug.branded)


@dataclass(frozen=True, slots=True)
class Condition:
    """A condition treated: its ICD-10 code, typical charge and the drugs that treat it."""

    label: str
    icd10: str
    base_charge: float
    drugs: Mapping[str, float]


CONDITIONS: tuple[Condition, ...] = (
    Condition("Essential hypertension", "I10", 180, {"LISINOPRIL": 5, "AMLODIPINE": 4}),
    Condition("Hyperlipidemia", "E78.5", 160, {"ATORVASTATIN": 8}),
    Condition("Type 2 diabetes", "E11.9", 240, {
        "METFORMIN": 6, "JARDIANCE": 2.5, "OZEMPIC": 2.5, "MOUNJARO": 2, "FARXIGA": 1.5,
        "TRULICITY": 1.2, "JANUVIA": 1}),
    Condition("Obesity", "E66.9", 200, {"OZEMPIC": 3, "MOUNJARO": 3}),
    Condition("Hypothyroidism", "E03.9", 150, {"LEVOTHYROXINE": 1}),
    Condition("Gastroesophageal reflux disease", "K21.9", 190, {"OMEPRAZOLE": 1}),
    Condition("Major depressive disorder", "F32.9", 220, {
        "SERTRALINE": 6, "VRAYLAR": 1, "REXULTI": 1}),
    Condition("Schizophrenia", "F20.9", 450, {"VRAYLAR": 3, "REXULTI": 2}),
    Condition("Bipolar disorder", "F31.9", 380, {"VRAYLAR": 3, "SERTRALINE": 1}),
    Condition("Atrial fibrillation", "I48.91", 650, {"ELIQUIS": 6, "XARELTO": 3}),
    Condition("Heart failure", "I50.9", 900, {"ENTRESTO": 4, "JARDIANCE": 2, "FARXIGA": 2}),
    Condition("Chronic kidney disease", "N18.9", 520, {
        "FARXIGA": 2, "JARDIANCE": 2, "AMLODIPINE": 1, "LISINOPRIL": 1}),
    Condition("Deep vein thrombosis", "I82.409", 700, {"ELIQUIS": 4, "XARELTO": 3}),
    Condition("Rheumatoid arthritis", "M06.9", 380, {"HUMIRA": 5, "ENBREL": 3}),
    Condition("Psoriatic arthritis", "L40.50", 360, {
        "HUMIRA": 3, "ENBREL": 2, "STELARA": 1, "SKYRIZI": 1}),
    Condition("Plaque psoriasis", "L40.0", 240, {
        "HUMIRA": 3, "SKYRIZI": 3, "STELARA": 2, "ENBREL": 1}),
    Condition("Atopic dermatitis", "L20.9", 230, {"DUPIXENT": 1}),
    Condition("Crohn's disease", "K50.90", 850, {"HUMIRA": 3, "STELARA": 3, "SKYRIZI": 2}),
    Condition("Ulcerative colitis", "K51.90", 780, {"HUMIRA": 3, "STELARA": 2, "SKYRIZI": 1}),
    Condition("Irritable bowel syndrome with constipation", "K58.1", 260, {"LINZESS": 1}),
    Condition("Non-small cell lung cancer", "C34.90", 4200, {"KEYTRUDA": 5, "OPDIVO": 3}),
    Condition("Melanoma", "C43.9", 3600, {"KEYTRUDA": 3, "OPDIVO": 3}),
    Condition("Breast cancer", "C50.919", 3300, {"IBRANCE": 4, "KEYTRUDA": 1}),
    Condition("Multiple myeloma", "C90.00", 4500, {"REVLIMID": 1}),
    Condition("Migraine", "G43.909", 300, {"NURTEC ODT": 1}),
    Condition("Peripheral neuropathy", "G62.9", 260, {"GABAPENTIN": 1}),
    Condition("COPD", "J44.9", 520, {"TRELEGY ELLIPTA": 1}),
    Condition("Asthma", "J45.909", 280, {"TRELEGY ELLIPTA": 1, "DUPIXENT": 1.5}),
    Condition("HIV infection", "B20", 600, {"BIKTARVY": 1}),
    Condition("Menopausal disorder", "N95.1", 170, {"ESTRADIOL": 1}),
    Condition("Polycystic ovary syndrome", "E28.2", 190, {"METFORMIN": 1}),
)  # fmt: skip

CONDITION_LABELS: tuple[str, ...] = tuple(condition.label for condition in CONDITIONS)

_PRIMARY_CARE: dict[str, float] = {
    "Essential hypertension": 10, "Hyperlipidemia": 9, "Type 2 diabetes": 8, "Obesity": 3,
    "Hypothyroidism": 5, "Gastroesophageal reflux disease": 5, "Major depressive disorder": 5,
    "Atrial fibrillation": 1.5, "Peripheral neuropathy": 2, "COPD": 2, "Asthma": 1.5,
    "Heart failure": 0.7, "Chronic kidney disease": 0.8, "Deep vein thrombosis": 0.3,
    "Rheumatoid arthritis": 0.15, "Plaque psoriasis": 0.15, "Migraine": 1,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Specialty:
    """A provider specialty: its share of providers and what its patients are treated for."""

    name: str
    practitioner: str  # what one is called in plain English ("rheumatologist")
    weight: float
    conditions: Mapping[str, float]
    credentials: Mapping[str, float] = field(default_factory=lambda: {"MD": 3, "DO": 1})


SPECIALTIES: tuple[Specialty, ...] = (
    Specialty("Family Medicine", "family physician", 20, _PRIMARY_CARE),
    Specialty("Internal Medicine", "internist", 16, {
        **_PRIMARY_CARE, "Atrial fibrillation": 3, "Heart failure": 2,
        "Chronic kidney disease": 2}),
    Specialty("Nurse Practitioner", "nurse practitioner", 13, _PRIMARY_CARE, {"NP": 1}),
    Specialty("Physician Assistant", "physician assistant", 6, _PRIMARY_CARE, {"PA-C": 1}),
    Specialty("Cardiology", "cardiologist", 5, {
        "Atrial fibrillation": 6, "Heart failure": 5, "Essential hypertension": 5,
        "Hyperlipidemia": 5, "Deep vein thrombosis": 1.5}),
    Specialty("Psychiatry", "psychiatrist", 5, {
        "Major depressive disorder": 7, "Schizophrenia": 3, "Bipolar disorder": 3}),
    Specialty("Obstetrics & Gynecology", "obstetrician-gynecologist", 4, {
        "Menopausal disorder": 4, "Polycystic ovary syndrome": 3, "Hypothyroidism": 2,
        "Major depressive disorder": 1}),
    Specialty("Dermatology", "dermatologist", 3.5, {
        "Plaque psoriasis": 5, "Atopic dermatitis": 5, "Psoriatic arthritis": 1}),
    Specialty("Gastroenterology", "gastroenterologist", 3.5, {
        "Crohn's disease": 4, "Ulcerative colitis": 4, "Gastroesophageal reflux disease": 4,
        "Irritable bowel syndrome with constipation": 3}),
    Specialty("Hematology/Oncology", "oncologist", 3, {
        "Non-small cell lung cancer": 4, "Melanoma": 2, "Breast cancer": 4,
        "Multiple myeloma": 2}),
    Specialty("Neurology", "neurologist", 3, {"Migraine": 5, "Peripheral neuropathy": 4}),
    Specialty("Rheumatology", "rheumatologist", 2.5, {
        "Rheumatoid arthritis": 8, "Psoriatic arthritis": 4}),
    Specialty("Endocrinology", "endocrinologist", 2.5, {
        "Type 2 diabetes": 10, "Obesity": 4, "Hypothyroidism": 4}),
    Specialty("Pulmonology", "pulmonologist", 2.5, {"COPD": 6, "Asthma": 5}),
    Specialty("Nephrology", "nephrologist", 1.5, {
        "Chronic kidney disease": 8, "Essential hypertension": 4, "Type 2 diabetes": 2}),
    Specialty("Infectious Disease", "infectious disease specialist", 1, {"HIV infection": 1}),
)  # fmt: skip

SPECIALTY_NAMES: tuple[str, ...] = tuple(specialty.name for specialty in SPECIALTIES)

PAYMENT_NATURES: tuple[tuple[str, float, float, float, str], ...] = (
    # (nature, share, median USD, log-sd, form)
    ("Food and Beverage", 62, 22, 0.6, "In-kind items and services"),
    ("Education", 12, 90, 0.8, "In-kind items and services"),
    ("Travel and Lodging", 8, 600, 0.6, "In-kind items and services"),
    ("Compensation for services other than consulting", 7, 2000, 0.5, "Cash or cash equivalent"),
    ("Consulting Fee", 5, 2500, 0.6, "Cash or cash equivalent"),
    ("Honoraria", 3, 1500, 0.5, "Cash or cash equivalent"),
    ("Grant", 1.5, 10000, 0.8, "Cash or cash equivalent"),
    ("Royalty or License", 0.5, 25000, 1.0, "Cash or cash equivalent"),
)

PLACES_OF_SERVICE: tuple[tuple[str, float, float, tuple[str, ...]], ...] = (
    # (place, share, charge multiplier, CPT codes)
    ("Office", 62, 1.0, ("99213", "99214", "99214", "99215")),
    ("Outpatient hospital", 18, 2.2, ("99214", "99215", "96413")),
    ("Telehealth", 9, 0.6, ("99212", "99213")),
    ("Emergency room", 6, 4.5, ("99284", "99285")),
    ("Inpatient hospital", 5, 18.0, ("99222", "99223")),
)

PRACTICE_SETTINGS: tuple[tuple[str, float], ...] = (
    ("Private practice", 45),
    ("Hospital-employed", 30),
    ("Multi-specialty group", 13),
    ("Academic medical center", 12),
)

FIRST_NAMES_F: tuple[str, ...] = (
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica",
    "Sarah", "Karen", "Lisa", "Nancy", "Betty", "Sandra", "Margaret", "Ashley", "Kimberly",
    "Emily", "Donna", "Michelle", "Carol", "Amanda", "Melissa", "Deborah", "Stephanie",
    "Rebecca", "Sharon", "Laura", "Cynthia", "Amy", "Kathleen", "Angela", "Anna", "Brenda",
    "Emma", "Olivia", "Priya", "Mei", "Fatima", "Sofia", "Maria", "Grace", "Hannah", "Aisha",
    "Lauren", "Rachel", "Nicole", "Julia", "Natalie", "Chloe",
)  # fmt: skip
FIRST_NAMES_M: tuple[str, ...] = (
    "James", "Robert", "John", "Michael", "David", "William", "Richard", "Joseph", "Thomas",
    "Christopher", "Charles", "Daniel", "Matthew", "Anthony", "Mark", "Donald", "Steven",
    "Paul", "Andrew", "Joshua", "Kenneth", "Kevin", "Brian", "George", "Timothy", "Ronald",
    "Jason", "Edward", "Jeffrey", "Ryan", "Jacob", "Gary", "Nicholas", "Eric", "Jonathan",
    "Raj", "Wei", "Omar", "Carlos", "Luis", "Samuel", "Benjamin", "Aaron", "Adam", "Nathan",
    "Ethan", "Henry", "Peter", "Arjun", "Hiroshi",
)  # fmt: skip
LAST_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall",
    "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Gomez", "Phillips", "Evans",
    "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes", "Stewart", "Morris",
    "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson",
    "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson", "Watson",
    "Brooks", "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes",
    "Price", "Alvarez", "Castillo", "Sanders", "Patel", "Myers", "Long", "Ross", "Foster",
    "Jimenez", "Chen", "Wang", "Singh", "Shah", "Khan", "Park", "O'Brien", "Cohen", "Sullivan",
    "Murray",
)  # fmt: skip
SCHOOLS: tuple[str, ...] = (
    "Harvard University", "Johns Hopkins University", "Stanford University",
    "University of Pennsylvania", "Columbia University", "Duke University",
    "University of Michigan", "University of California, San Francisco", "Yale University",
    "Washington University in St. Louis", "University of Washington", "Northwestern University",
    "University of Pittsburgh", "Baylor College of Medicine", "Emory University",
    "Vanderbilt University", "Ohio State University", "University of Texas Southwestern",
    "University of North Carolina", "Mayo Clinic Alix School of Medicine",
    "University of Florida", "Indiana University", "University of Minnesota",
    "University of Wisconsin", "Boston University", "Tufts University", "Georgetown University",
    "University of Colorado", "University of Iowa", "University of Virginia",
    "Rutgers University", "Temple University", "University of Arizona", "University of Utah",
    "Tulane University", "University of Miami", "Loyola University Chicago",
    "Saint Louis University", "University of Kentucky", "Creighton University",
    "Philadelphia College of Osteopathic Medicine", "Des Moines University",
    "Kansas City University", "A.T. Still University", "Rush University",
    "Vanderbilt University School of Nursing", "Duke University School of Nursing",
    "University of Texas Health Science Center",
)  # fmt: skip

# --- sizes and the random machinery ------------------------------------------------------

PRESCRIBER_SKEW = 2.5  # rank = n * u**skew: the top 1% of prescribers write ~16% of claims
PAYMENT_SKEW = 3.0  # payments favour the biggest prescribers even more
FILLS_PER_PATIENT = 8  # a patient fills about this many prescriptions over the two years
BUCKETS = 4096  # resolution of a weighted choice
DATE_BUCKETS = 16384
CHUNK_ROWS = 1_000_000  # claims inserted per statement (progress granularity)
_U_SCALE = 4503599627370496.0  # 2**52
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Sizes:
    """Row counts of the four tables for a given number of pharmacy claims."""

    rx_claims: int
    med_claims: int
    payments: int
    providers: int

    @classmethod
    def for_rx_claims(cls, rx_claims: int) -> Sizes:
        return cls(
            rx_claims=rx_claims,
            med_claims=rx_claims // 2,
            payments=max(rx_claims // 10, 200),
            providers=min(max(rx_claims // 40, 1_000), 250_000),
        )


#: The smallest NPI base generated: synthetic NPIs begin with a 9, which CMS never issues.
SYNTHETIC_NPI_BASE = 900_000_000


def npi_check_digit(base: str) -> int:
    """The Luhn check digit of a 9-digit NPI base (the ``80840`` prefix counted as 24)."""
    if len(base) != 9 or not base.isdigit():
        raise ValueError(f"an NPI base is 9 digits, got {base!r}")
    total = 24
    for position, char in enumerate(reversed(base)):
        digit = int(char)
        if position % 2 == 0:  # every other digit from the right, starting at the rightmost
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return (10 - total % 10) % 10


def is_valid_npi(npi: str, *, synthetic: bool = False) -> bool:
    """Whether ``npi`` is 10 digits with a correct Luhn check digit, beginning as CMS's do
    (1 or 2) or, with ``synthetic``, as this generator's do (9)."""
    return (
        len(npi) == 10
        and npi.isdigit()
        and npi[0] in ("9" if synthetic else "12")
        and npi_check_digit(npi[:9]) == int(npi[9])
    )


def _mix(seed: int, salt: int) -> int:
    """A well-mixed 63-bit constant for (seed, salt): SplitMix64 of their combination."""
    z = (seed * 0x9E3779B97F4A7C15 + salt * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & 0x7FFF_FFFF_FFFF_FFFF


def _hash(key: str, seed: int, salt: int) -> str:
    """SQL for a 64-bit hash of the integer expression ``key`` under (seed, salt).

    DuckDB's ``hash(a, b, c)`` combines its arguments weakly (draws with different salts come
    out correlated), so the salt is folded into the key with a mixed constant instead, and
    the single-argument hash (a MurmurHash finaliser, a bijection) does the scrambling.
    """
    return f"hash(xor({key}, {_mix(seed, salt)}))"


def _u(key: str, seed: int, salt: int) -> str:
    """SQL for a uniform number in (0, 1) drawn from a hash of ``key`` (deterministic)."""
    # DOUBLE arithmetic throughout: a bare 0.5 would make DuckDB compute in DECIMAL (slow)
    return f"((({_hash(key, seed, salt)} >> 12)::DOUBLE + 0.5::DOUBLE) * {1 / _U_SCALE!r})"


def _bucket(key: str, seed: int, salt: int, buckets: int = BUCKETS) -> str:
    return f"CAST({_hash(key, seed, salt)} % {buckets} AS INTEGER)"


def _normal(key: str, seed: int, salt: int) -> str:
    """SQL for a standard normal draw (Box-Muller on two hashed uniforms)."""
    return f"(sqrt(-2 * ln({_u(key, seed, salt)})) * cos(2 * pi() * {_u(key, seed, salt + 1)}))"


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_sql_str(value) for value in values) + "]"


def _sql_list_int(values: Sequence[int]) -> str:
    return "[" + ", ".join(str(value) for value in values) + "]"


def _pick(values: Sequence[str], uniform: str) -> str:
    """SQL picking one of ``values`` uniformly with the uniform draw ``uniform``."""
    return f"{_sql_list(values)}[1 + CAST(floor({uniform} * {len(values)}) AS INTEGER)]"


def bucket_table(weights: Sequence[float], buckets: int = BUCKETS) -> list[int]:
    """For each of ``buckets`` equal slices of [0, 1), the index of the option it falls in.

    Options get slices in proportion to their weights (cumulative weights, midpoint rule);
    an option with a positive weight always gets at least one slice.
    """
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("at least one weight must be positive")
    cumulative = list(itertools.accumulate(w / total for w in weights))
    table = [min(bisect_right(cumulative, (b + 0.5) / buckets), len(weights) - 1)
             for b in range(buckets)]  # fmt: skip
    present = set(table)
    for index, weight in enumerate(weights):  # tiny weights: steal one slice from the largest
        if weight > 0 and index not in present:
            largest = max(set(table), key=table.count)
            table[table.index(largest)] = index
            present.add(index)
    return table


def _day_weights(trend: str) -> list[float]:
    """Relative volume of each day of 2023-2024: weekdays, holidays, winter peak, a trend."""
    days = (END_DATE - START_DATE).days + 1
    weights = []
    for offset in range(days):
        day = START_DATE + timedelta(days=offset)
        t = offset / (days - 1)
        if trend == "office":  # medical claims and payments: weekdays only, mostly
            weekday = (1.0, 1.0, 1.0, 1.0, 0.95, 0.15, 0.05)[day.weekday()]
        else:
            weekday = (1.0, 1.0, 1.0, 1.0, 1.05, 0.6, 0.3)[day.weekday()]
        if (day.month, day.day) in {(1, 1), (7, 4), (12, 25)}:
            weekday *= 0.3
        season = 1 + 0.07 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 15) / 365.25)
        growth = {
            "growing_fast": math.exp(0.9 * t),
            "growing": 1 + 0.3 * t,
            "declining": 1 - 0.35 * t,
        }.get(trend, 1.0)
        weights.append(weekday * season * growth)
    return weights


TREND_IDS: dict[str, int] = {
    "growing_fast": 0,
    "growing": 1,
    "flat": 2,
    "declining": 3,
    "office": 4,
}


#: Bumped whenever the generator's output changes, so that databases built by an earlier
#: version are not reused as this one's (2: NPIs beginning with 9).
DATA_VERSION = 2


def default_database_path(rx_claims: int = DEFAULT_RX_CLAIMS, seed: int = DEFAULT_SEED) -> Path:
    """Where ``ensure_database`` keeps the database of this size and seed (and
    :data:`DATA_VERSION`)."""
    name = f"claims-v{DATA_VERSION}-{rx_claims}-{seed}.duckdb"
    return loopwright_home() / "data" / "healthcare" / name


# --- building ------------------------------------------------------------------------------


class _Builder:
    """Builds the four tables into one open DuckDB connection."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        sizes: Sizes,
        seed: int,
        progress: ProgressCallback | None,
    ) -> None:
        self.con = con
        self.sizes = sizes
        self.seed = seed
        self.progress = progress
        # how the work splits, for the progress fraction: proportional to rows generated
        self._total_work = sizes.rx_claims + sizes.med_claims + sizes.payments + sizes.providers
        self._done_work = 0

    def _report(self, message: str, work: int = 0) -> None:
        self._done_work += work
        if self.progress is not None:
            self.progress(min(self._done_work / self._total_work, 0.99), message)

    def build(self) -> None:
        self._report("preparing lookup tables")
        self._lookups()
        self._report("generating providers")
        self._providers()
        self._report("generating pharmacy claims", self.sizes.providers)
        self._chunked("RX_CLAIMS", self.sizes.rx_claims, self._rx_claims_sql, "pharmacy claims")
        self._report("generating medical claims")
        self._chunked("MED_CLAIMS", self.sizes.med_claims, self._med_claims_sql, "medical claims")
        self._report("generating provider payments")
        self._chunked("PROVIDER_PAYMENTS", self.sizes.payments, self._payments_sql, "payments")
        self._report("writing comments")
        self._comments()

    # lookups --------------------------------------------------------------------------

    def _table(self, name: str, columns: Mapping[str, tuple[str, Sequence[object]]]) -> None:
        """A temp table from Python lists: ``{column: (sql type, values)}``."""
        selects = ", ".join(
            f"unnest(${index + 1}::{sql_type}[]) AS {column}"
            for index, (column, (sql_type, _)) in enumerate(columns.items())
        )
        values = [list(values) for _, values in columns.values()]
        self.con.execute(f"CREATE TEMP TABLE {name} AS SELECT {selects}", values)

    def _grouped_lookup(
        self, name: str, key: str, groups: Sequence[Sequence[float]], value: str, buckets: int
    ) -> None:
        keys: list[int] = []
        bucket_ids: list[int] = []
        values: list[int] = []
        for group_id, weights in enumerate(groups):
            table = bucket_table(weights, buckets)
            keys.extend([group_id] * buckets)
            bucket_ids.extend(range(buckets))
            values.extend(table)
        self._table(
            name,
            {key: ("INTEGER", keys), "bucket": ("INTEGER", bucket_ids), value: ("INTEGER", values)},
        )

    def _lookups(self) -> None:
        drug_index = {drug.name: index for index, drug in enumerate(DRUGS)}
        condition_index = {condition.label: index for index, condition in enumerate(CONDITIONS)}
        self._table(
            "d_state",
            {
                "state_id": ("INTEGER", range(len(STATES))),
                "state_code": ("VARCHAR", [s.code for s in STATES]),
            },
        )
        self._table(
            "lk_state",
            {
                "bucket": ("INTEGER", range(BUCKETS)),
                "state_id": ("INTEGER", bucket_table([s.population_m for s in STATES])),
            },
        )
        self._table(
            "lk_spec",
            {
                "bucket": ("INTEGER", range(BUCKETS)),
                "spec_id": ("INTEGER", bucket_table([s.weight for s in SPECIALTIES])),
            },
        )
        self._table(
            "d_spec",
            {
                "spec_id": ("INTEGER", range(len(SPECIALTIES))),
                "specialty": ("VARCHAR", SPECIALTY_NAMES),
            },
        )
        self._grouped_lookup(
            "lk_cond",
            "spec_id",
            [[s.conditions.get(c.label, 0.0) for c in CONDITIONS] for s in SPECIALTIES],
            "cond_id",
            BUCKETS,
        )
        self._grouped_lookup(
            "lk_drug",
            "cond_id",
            [[c.drugs.get(d.name, 0.0) for d in DRUGS] for c in CONDITIONS],
            "drug_id",
            BUCKETS,
        )
        # payments: a specialty's branded drugs, weighted by how much the specialty uses them
        brand_weights: list[list[float]] = []
        for specialty in SPECIALTIES:
            weights = [0.0] * len(DRUGS)
            total = sum(specialty.conditions.values())
            for label, share in specialty.conditions.items():
                condition = CONDITIONS[condition_index[label]]
                drug_total = sum(condition.drugs.values())
                for name, weight in condition.drugs.items():
                    if DRUGS[drug_index[name]].branded:
                        weights[drug_index[name]] += share / total * weight / drug_total
            if sum(weights) == 0:
                weights = [1.0 if drug.branded else 0.0 for drug in DRUGS]
            brand_weights.append(weights)
        self._grouped_lookup("lk_brand", "spec_id", brand_weights, "drug_id", BUCKETS)
        self._table(
            "d_cond",
            {
                "cond_id": ("INTEGER", range(len(CONDITIONS))),
                "condition_label": ("VARCHAR", CONDITION_LABELS),
                "icd10": ("VARCHAR", [c.icd10 for c in CONDITIONS]),
                "base_charge": ("DOUBLE", [c.base_charge for c in CONDITIONS]),
            },
        )
        self._table(
            "d_drug",
            {
                "drug_id": ("INTEGER", range(len(DRUGS))),
                "drug_name": ("VARCHAR", DRUG_NAMES),
                "generic": ("VARCHAR", [d.generic for d in DRUGS]),
                "drug_class": ("VARCHAR", [d.drug_class for d in DRUGS]),
                "manufacturer": ("VARCHAR", [d.manufacturer for d in DRUGS]),
                "labeler": ("VARCHAR", [d.labeler for d in DRUGS]),
                "trend_id": ("INTEGER", [TREND_IDS[d.trend] for d in DRUGS]),
                "cycle_days": ("INTEGER", [d.cycle_days for d in DRUGS]),
                "units": ("DOUBLE", [d.units_per_cycle for d in DRUGS]),
                "unit_price": ("DOUBLE", [d.unit_price for d in DRUGS]),
                "allow_90": ("BOOLEAN", [d.allow_90 for d in DRUGS]),
                "branded": ("BOOLEAN", [d.branded for d in DRUGS]),
                "product_base": ("INTEGER", [_product_base(d.name) for d in DRUGS]),
            },
        )
        self._grouped_lookup(
            "lk_date",
            "trend_id",
            [_day_weights(trend) for trend in TREND_IDS],
            "day",
            DATE_BUCKETS,
        )
        self._table(
            "d_nature",
            {
                "nature_id": ("INTEGER", range(len(PAYMENT_NATURES))),
                "nature": ("VARCHAR", [n[0] for n in PAYMENT_NATURES]),
                "median_usd": ("DOUBLE", [n[2] for n in PAYMENT_NATURES]),
                "log_sd": ("DOUBLE", [n[3] for n in PAYMENT_NATURES]),
                "form": ("VARCHAR", [n[4] for n in PAYMENT_NATURES]),
            },
        )
        self._table(
            "lk_nature",
            {
                "bucket": ("INTEGER", range(BUCKETS)),
                "nature_id": ("INTEGER", bucket_table([n[1] for n in PAYMENT_NATURES])),
            },
        )

    # providers ------------------------------------------------------------------------

    def _providers(self) -> None:
        n, seed = self.sizes.providers, self.seed
        # NPI bases: a scrambling bijection of the index on 26 bits (xor, odd multiplies and
        # xor-shifts are each invertible), so NPIs are unique and look random; 9 and eight
        # digits, never a real NPI (see the module docstring)
        mask = (1 << 26) - 1
        x0 = f"xor(idx, {_mix(seed, 100) & mask})"
        x1 = f"(({x0}) * {0x5BD1E995} & {mask})"
        x2 = f"xor({x1}, {x1} >> 13)"
        x3 = f"(({x2}) * {0x27D4EB2F} & {mask})"
        base = f"({SYNTHETIC_NPI_BASE} + xor(x3, x3 >> 11))"
        terms = []
        for j in range(9):
            digit = f"(({base} // {10 ** (8 - j)}) % 10)"
            if j % 2 == 0:  # doubled: every other digit from the right of the 9-digit base
                terms.append(f"(CASE WHEN {digit} >= 5 THEN {digit} * 2 - 9 ELSE {digit} * 2 END)")
            else:
                terms.append(digit)
        check = f"((10 - (24 + {' + '.join(terms)}) % 10) % 10)"
        inv = 1 / PRESCRIBER_SKEW
        # expected pharmacy claims of the prescriber at rank idx, for the size of its panel
        expected = f"{self.sizes.rx_claims} * (pow((idx + 1) / {n}, {inv}) - pow(idx / {n}, {inv}))"
        guaranteed = len(STATES)  # the last ranks cover every state once
        settings = [s[0] for s in PRACTICE_SETTINGS]
        setting_table = bucket_table([s[1] for s in PRACTICE_SETTINGS], 100)
        credential_cases = " ".join(
            f"WHEN {i} THEN {_pick(self._credential_list(s), _u('idx', seed, 107))}"
            for i, s in enumerate(SPECIALTIES)
        )
        female_share = " ".join(
            f"WHEN {i} THEN {0.85 if s.name == 'Nurse Practitioner' else 0.5}"
            for i, s in enumerate(SPECIALTIES)
        )
        self.con.execute(f"""
            CREATE TEMP TABLE prov AS
            WITH scrambled AS (
                SELECT idx, {x3} AS x3 FROM range({n}) r(idx)
            ),
            b AS (
                SELECT idx,
                       CAST({base}::VARCHAR || {check}::VARCHAR AS VARCHAR) AS npi,
                       CASE WHEN idx >= {n} - {guaranteed} AND {n} >= {guaranteed}
                            THEN {n} - 1 - idx END AS fixed_state,
                       {_bucket("idx", seed, 101)} AS state_bucket,
                       {_bucket("idx", seed, 102)} AS spec_bucket,
                       greatest(1, CAST(round(({expected}) / {FILLS_PER_PATIENT}) AS BIGINT))
                           AS panel
                FROM scrambled
            )
            SELECT b.idx, b.npi, b.panel,
                   CAST(sum(b.panel) OVER (ORDER BY b.idx) - b.panel AS BIGINT) AS patient_base,
                   s.spec_id, d_spec.specialty, d_state.state_code,
                   CASE WHEN {_u("b.idx", seed, 103)} < (CASE s.spec_id {female_share} END)
                        THEN 'F' ELSE 'M' END AS gender
            FROM b
            JOIN lk_spec s ON s.bucket = b.spec_bucket
            JOIN d_spec USING (spec_id)
            JOIN lk_state ls ON ls.bucket = b.state_bucket
            JOIN d_state ON d_state.state_id = coalesce(b.fixed_state, ls.state_id)
        """)
        years = f"(1 + CAST(floor(39 * pow({_u('idx', seed, 106)}, 1.3)) AS INTEGER))"
        self.con.execute(f"""
            CREATE TABLE PROVIDERS_BIO AS
            SELECT npi AS npi_number,
                   CASE gender WHEN 'F' THEN {_pick(FIRST_NAMES_F, _u("idx", seed, 104))}
                               ELSE {_pick(FIRST_NAMES_M, _u("idx", seed, 104))} END
                       AS first_name,
                   {_pick(LAST_NAMES, _u("idx", seed, 105))} AS last_name,
                   CASE spec_id {credential_cases} END AS credential,
                   gender,
                   specialty,
                   {_pick(SCHOOLS, _u("idx", seed, 108))} AS education,
                   CAST(2024 - {years} - CASE WHEN spec_id IN (2, 3) THEN 0 ELSE 3 END
                        AS INTEGER) AS graduation_year,
                   {years} AS years_in_practice,
                   state_code AS state,
                   {_sql_list(settings)}[1 + {_sql_list_int(setting_table)}[
                       1 + {_bucket("idx", seed, 109, 100)}]] AS practice_setting
            FROM prov ORDER BY idx
        """)

    @staticmethod
    def _credential_list(specialty: Specialty) -> list[str]:
        """Credentials repeated by weight, so a uniform pick is a weighted one."""
        return [name for name, weight in specialty.credentials.items() for _ in range(int(weight))]

    # claims -----------------------------------------------------------------------------

    def _chunked(self, table: str, rows: int, sql: Callable[[int, int], str], label: str) -> None:
        for start in range(0, rows, CHUNK_ROWS):
            end = min(start + CHUNK_ROWS, rows)
            statement = sql(start, end)
            if start == 0:
                self.con.execute(f"CREATE TABLE {table} AS {statement}")
            else:
                self.con.execute(f"INSERT INTO {table} {statement}")
            self._report(f"generated {end:,} of {rows:,} {label}", end - start)

    def _patient_sql(self, salt: int) -> str:
        """Columns derived from ``patient_no``: id, birth year, sex, payer (per patient)."""
        seed = self.seed
        # ids: an affine permutation of the patient number, so ids are unique but opaque
        offset = (seed * 40_503) % 10_000_000_000
        age = f"(18 + CAST(floor(72 * pow({_u('patient_no', seed, salt)}, 0.75)) AS INTEGER))"
        payer_u = _u("patient_no", seed, salt + 2)
        return f"""
            'PT' || lpad(((patient_no * 7919 + {offset}) % 10000000000)::VARCHAR, 10, '0')
                AS PATIENT_ID,
            CAST(2024 - {age} AS SMALLINT) AS PATIENT_BIRTH_YEAR,
            CASE WHEN {_u("patient_no", seed, salt + 1)} < 0.54 THEN 'F' ELSE 'M' END
                AS PATIENT_GENDER_CD,
            CASE WHEN {age} >= 65 THEN (CASE WHEN {payer_u} < 0.88 THEN 'Medicare'
                                             ELSE 'Commercial' END)
                 WHEN {payer_u} < 0.68 THEN 'Commercial'
                 WHEN {payer_u} < 0.93 THEN 'Medicaid'
                 ELSE 'Cash' END AS PAYER_TYPE"""

    def _rank(self, key: str, salt: int, skew: float) -> str:
        """SQL for a provider index, Zipf-like: low indexes are drawn far more often."""
        n = self.sizes.providers
        return (
            f"least({n} - 1, CAST(floor({n} * pow({_u(key, self.seed, salt)}, {skew})) AS INTEGER))"
        )

    def _rx_claims_sql(self, start: int, end: int) -> str:
        seed = self.seed
        return f"""
            WITH b AS (
                SELECT i, {self._rank("i", 1, PRESCRIBER_SKEW)} AS prov_idx,
                       {_u("i", seed, 2)} AS u_patient,
                       CASE WHEN {_u("i", seed, 3)} < 0.7 THEN 0 ELSE 1 END AS which,
                       {_bucket("i", seed, 4, DATE_BUCKETS)} AS date_bucket,
                       {_u("i", seed, 5)} AS u_90,
                       {_u("i", seed, 6)} AS u_price,
                       {_u("i", seed, 7)} AS u_copay
                FROM range({start}, {end}) r(i)
            ),
            p AS (
                SELECT b.*, pr.npi, pr.state_code, pr.spec_id,
                       pr.patient_base + CAST(floor(b.u_patient * pr.panel) AS BIGINT)
                           AS patient_no
                FROM b JOIN prov pr ON pr.idx = b.prov_idx
            ),
            c AS (
                SELECT p.*, {_bucket("patient_no * 2 + which", seed, 20)} AS cond_bucket,
                       {_bucket("patient_no * 2 + which", seed, 30)} AS drug_bucket,
                       {self._patient_sql(40)}
                FROM p
            ),
            d AS (
                SELECT c.*, dd.*,
                       CASE WHEN dd.allow_90 AND c.u_90 < 0.3 THEN 3 ELSE 1 END AS mult,
                       dt.day
                FROM c
                JOIN lk_cond lc ON lc.spec_id = c.spec_id AND lc.bucket = c.cond_bucket
                JOIN lk_drug ld ON ld.cond_id = lc.cond_id AND ld.bucket = c.drug_bucket
                JOIN d_drug dd ON dd.drug_id = ld.drug_id
                JOIN lk_date dt ON dt.trend_id = dd.trend_id AND dt.bucket = c.date_bucket
            ),
            e AS (
                SELECT d.*, round(units * mult * unit_price * (0.9 + 0.2 * u_price), 2) AS paid
                FROM d
            )
            SELECT 'RX' || lpad((i + 1)::VARCHAR, 10, '0') AS CLAIM_ID,
                   PATIENT_ID, PATIENT_BIRTH_YEAR, PATIENT_GENDER_CD,
                   npi AS PRESCRIBER_NPI_NBR,
                   state_code AS PRESCRIBER_NPI_STATE_CD,
                   labeler || lpad((product_base + {_bucket("patient_no", seed, 50, 3)})::VARCHAR,
                                   4, '0') || '01' AS NDC_CD,
                   drug_name AS NDC_DRUG_NM,
                   generic AS GENERIC_NM,
                   drug_class AS THERAPEUTIC_CLASS,
                   DATE '{START_DATE.isoformat()}' + day AS SERVICE_DATE_DD,
                   CAST(units * mult AS DECIMAL(10, 2)) AS DISPENSED_QUANTITY_VAL,
                   CAST(cycle_days * mult AS INTEGER) AS DAYS_SUPPLY_CNT,
                   PAYER_TYPE,
                   CAST(paid AS DECIMAL(12, 2)) AS PAID_AMT,
                   CAST(least(paid, CASE PAYER_TYPE
                        WHEN 'Cash' THEN paid
                        WHEN 'Medicaid' THEN 1 + 3 * u_copay
                        WHEN 'Medicare' THEN least(paid * 0.25, 10 + 90 * u_copay * mult)
                        ELSE (CASE WHEN branded THEN 25 ELSE 5 END) * (1 + 2 * u_copay) * mult
                        END)
                        AS DECIMAL(12, 2)) AS PATIENT_PAY_AMT
            FROM e
        """

    def _med_claims_sql(self, start: int, end: int) -> str:
        seed = self.seed
        places = " ".join(
            f"WHEN {i} THEN {_sql_str(place[0])}" for i, place in enumerate(PLACES_OF_SERVICE)
        )
        multipliers = " ".join(
            f"WHEN {i} THEN {place[2]}" for i, place in enumerate(PLACES_OF_SERVICE)
        )
        procedures = " ".join(
            f"WHEN {i} THEN {_pick(place[3], _u('i', seed, 68))}"
            for i, place in enumerate(PLACES_OF_SERVICE)
        )
        place_table = bucket_table([p[1] for p in PLACES_OF_SERVICE], 100)
        paid_ratio = "CASE PAYER_TYPE WHEN 'Commercial' THEN 0.55 WHEN 'Medicare' THEN 0.38 " \
                     "WHEN 'Medicaid' THEN 0.30 ELSE 0.70 END"  # fmt: skip
        return f"""
            WITH b AS (
                SELECT i, {self._rank("i", 61, PRESCRIBER_SKEW)} AS prov_idx,
                       {_u("i", seed, 62)} AS u_patient,
                       {_u("i", seed, 63)} AS u_which,
                       {_bucket("i", seed, 64, DATE_BUCKETS)} AS date_bucket,
                       {_sql_list_int(place_table)}[1 + {_bucket("i", seed, 65, 100)}]
                           AS place_id,
                       {_normal("i", seed, 66)} AS z
                FROM range({start}, {end}) r(i)
            ),
            p AS (
                SELECT b.*, pr.npi, pr.state_code, pr.spec_id,
                       pr.patient_base + CAST(floor(b.u_patient * pr.panel) AS BIGINT)
                           AS patient_no
                FROM b JOIN prov pr ON pr.idx = b.prov_idx
            ),
            c AS (
                SELECT p.*,
                       CASE WHEN u_which < 0.65 THEN {_bucket("patient_no * 2", seed, 20)}
                            WHEN u_which < 0.90 THEN {_bucket("patient_no * 2 + 1", seed, 20)}
                            ELSE {_bucket("i", seed, 67)} END AS cond_bucket,
                       {self._patient_sql(40)}
                FROM p
            ),
            d AS (
                SELECT c.*, dc.condition_label, dc.icd10, dc.base_charge, dt.day,
                       round(dc.base_charge * (CASE place_id {multipliers} END)
                             * exp(0.35 * z), 2) AS charge
                FROM c
                JOIN lk_cond lc ON lc.spec_id = c.spec_id AND lc.bucket = c.cond_bucket
                JOIN d_cond dc ON dc.cond_id = lc.cond_id
                JOIN lk_date dt ON dt.trend_id = {TREND_IDS["office"]} AND dt.bucket = c.date_bucket
            )
            SELECT 'MC' || lpad((i + 1)::VARCHAR, 10, '0') AS CLAIM_ID,
                   PATIENT_ID, PATIENT_BIRTH_YEAR, PATIENT_GENDER_CD,
                   npi AS PRIMARY_HCP,
                   state_code AS SERVICE_STATE_CD,
                   condition_label,
                   icd10 AS ICD10_CD,
                   CASE place_id {procedures} END AS PROCEDURE_CD,
                   CASE place_id {places} END AS PLACE_OF_SERVICE,
                   DATE '{START_DATE.isoformat()}' + day AS STATEMENT_FROM_DD,
                   DATE '{START_DATE.isoformat()}' + day + CASE WHEN place_id = 4
                       THEN 2 + {_bucket("i", seed, 69, 7)} ELSE 0 END AS STATEMENT_TO_DD,
                   CAST(charge AS DECIMAL(12, 2)) AS CLAIM_CHARGE_AMT,
                   CAST(charge * ({paid_ratio}) * (0.9 + 0.2 * {_u("i", seed, 70)})
                        AS DECIMAL(12, 2)) AS CLAIM_PAID_AMT,
                   PAYER_TYPE
            FROM d
        """

    def _payments_sql(self, start: int, end: int) -> str:
        seed = self.seed
        return f"""
            WITH b AS (
                SELECT i, {self._rank("i", 81, PAYMENT_SKEW)} AS prov_idx,
                       {_bucket("i", seed, 82)} AS product_bucket,
                       {_bucket("i", seed, 83)} AS nature_bucket,
                       {_bucket("i", seed, 84, DATE_BUCKETS)} AS date_bucket,
                       {_normal("i", seed, 85)} AS z,
                       {_u("i", seed, 87)} AS u_count
                FROM range({start}, {end}) r(i)
            )
            SELECT 'PAY' || lpad((i + 1)::VARCHAR, 9, '0') AS payment_id,
                   pr.npi AS npi_number,
                   pr.state_code AS recipient_state,
                   dd.manufacturer AS manufacturer_name,
                   dd.drug_name AS associated_product,
                   dn.nature AS nature_of_payment,
                   dn.form AS form_of_payment,
                   CAST(dn.median_usd * exp(dn.log_sd * b.z) AS DECIMAL(12, 2))
                       AS total_payment_amount,
                   CAST(CASE WHEN b.u_count < 0.9 THEN 1 ELSE 2 + floor(b.u_count * 3) END
                        AS INTEGER) AS number_of_payments,
                   DATE '{START_DATE.isoformat()}' + dt.day AS payment_date,
                   CAST(year(DATE '{START_DATE.isoformat()}' + dt.day) AS INTEGER)
                       AS program_year
            FROM b
            JOIN prov pr ON pr.idx = b.prov_idx
            JOIN lk_brand lb ON lb.spec_id = pr.spec_id AND lb.bucket = b.product_bucket
            JOIN d_drug dd ON dd.drug_id = lb.drug_id
            JOIN lk_nature ln ON ln.bucket = b.nature_bucket
            JOIN d_nature dn ON dn.nature_id = ln.nature_id
            JOIN lk_date dt ON dt.trend_id = {TREND_IDS["office"]} AND dt.bucket = b.date_bucket
        """

    def _comments(self) -> None:
        note = (
            f" Generated by loopwright.healthcare.data v{GENERATOR_VERSION} "
            f"(seed {self.seed}, {self.sizes.rx_claims} rx claims)."
        )
        for table, columns in TABLES.items():
            self.con.execute(
                f"COMMENT ON TABLE {table} IS {_sql_str(TABLE_DESCRIPTIONS[table] + note)}"
            )
            for column in columns:
                self.con.execute(
                    f"COMMENT ON COLUMN {table}.{column.name} IS {_sql_str(column.description)}"
                )


def _product_base(name: str) -> int:
    """A stable 4-digit NDC product code for a drug (synthetic, from its name)."""
    return 1000 + sum((i + 1) * ord(c) for i, c in enumerate(name)) * 37 % 8000


# --- the public entry points ----------------------------------------------------------------


def build_database(
    path: str | os.PathLike[str],
    rx_claims: int = DEFAULT_RX_CLAIMS,
    seed: int = DEFAULT_SEED,
    progress: ProgressCallback | None = None,
) -> Path:
    """Generate the four tables into a new DuckDB file at ``path`` (replacing any file there).

    The database is written to a temporary file next to ``path`` and renamed into place when
    complete, so a reader never sees a half-built file.
    """
    import duckdb

    _check_size(rx_claims)
    _check_seed(seed)
    target = Path(path).expanduser()  # DuckDB would expand "~" itself, os.replace would not
    _check_not_a_directory(target)
    _make_directory(target.parent)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    _BUILDING.add(temp)
    try:
        con = duckdb.connect(str(temp))
        con.execute("SET enable_progress_bar = false")
        try:
            _Builder(con, Sizes.for_rx_claims(rx_claims), seed, progress).build()
            con.execute("CHECKPOINT")
        finally:
            con.close()
        # a write-ahead log beside the target belongs to the file being replaced (a writer
        # killed with it open left it): DuckDB would refuse to open the new file with it
        _remove(target.with_name(target.name + ".wal"))
        os.replace(temp, target)
    except duckdb.InterruptException:  # Ctrl-C reached DuckDB first: it is still Ctrl-C
        raise KeyboardInterrupt from None
    except RuntimeError as exc:  # DuckDB's Python layer says "Query interrupted" this way
        if str(exc).strip() == "Query interrupted":
            raise KeyboardInterrupt from None
        raise
    except duckdb.Error as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        advice = (
            "build a smaller one (fewer rx claims), or free memory and disk space"
            if isinstance(exc, duckdb.OutOfMemoryException)  # it spills to disk first
            else "check the free disk space and that the data directory (LOOPWRIGHT_HOME) is "
            "writable"
        )
        raise DatabaseBuildError(f"DuckDB could not build {target} ({detail}); {advice}.") from exc
    finally:
        for leftover in (temp, temp.with_name(temp.name + ".wal")):
            leftover.unlink(missing_ok=True)
        _BUILDING.discard(temp)
    if progress is not None:
        progress(1.0, "done")
    return target


def ensure_database(
    rx_claims: int = DEFAULT_RX_CLAIMS,
    seed: int = DEFAULT_SEED,
    path: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """The path of the claims database of this size and seed, building it on first use.

    Without ``path`` the file is :func:`default_database_path`:
    ``<LOOPWRIGHT_HOME>/data/healthcare/claims-v<DATA_VERSION>-<n>-<seed>.duckdb``.
    An existing file is returned as is. Two processes asking at once do not both build: the
    second waits for the first (a lock file next to the database) and reuses its result.
    ``progress(fraction, message)`` is called as the build advances (not when reused), and
    while this call waits for another process's build of the same file (at 0, then at 1 when
    that build is reused).
    """
    _check_size(rx_claims)
    _check_seed(seed)
    target = Path(path).expanduser() if path is not None else default_database_path(rx_claims, seed)
    _check_not_a_directory(target)
    if target.exists():
        return target
    _make_directory(target.parent)
    waited = False

    def waiting() -> None:
        nonlocal waited
        waited = True
        if progress is not None:
            progress(0.0, "waiting for another build")

    with _build_lock(target, waiting):
        _remove_abandoned_builds(target)
        if not target.exists():  # a concurrent caller may have built it while we waited
            build_database(target, rx_claims=rx_claims, seed=seed, progress=progress)
        elif waited and progress is not None:
            progress(1.0, "built by another process")
    return target


#: The temporary files of the builds running in this process: a leftover named with this
#: process's id may be an earlier process's (a container's PID 1 of a run killed before).
_BUILDING: set[Path] = set()


def _remove_abandoned_builds(target: Path) -> None:
    """Delete the temporary files of builds of ``target`` that no live process is running
    (killed by SIGTERM, SIGKILL, the OOM killer or a closed terminal, which skip the build's
    own clean-up), and the ``<temp>.tmp`` directory DuckDB spills to when memory runs short.
    Called with the build lock held, so only a direct :func:`build_database` of this file
    can be running. Best effort: a leftover that cannot be deleted does not stop the build."""
    # escaped: a "[" in the file name would make the pattern a character class
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp*"):
        pid, _, rest = leftover.name.removeprefix(f".{target.name}.").partition(".")
        hex_id, _, suffix = rest.partition(".")
        if not pid.isdigit() or not (suffix == "tmp" or suffix.startswith("tmp.")):
            continue
        if _abandoned(target.with_name(f".{target.name}.{pid}.{hex_id}.tmp"), int(pid)):
            _remove(leftover)


def _abandoned(temp: Path, pid: int) -> bool:
    """Whether the build writing ``temp`` (started by process ``pid``) is over.

    A process id alone does not say: a build killed a moment ago still has one until its
    parent reaps it (a waiting build wakes as soon as the killed one's lock goes, before
    that), and a new process may have the id (in a container, every run is PID 1). DuckDB
    holds a lock on a database file for as long as it has it open, released when its
    process dies: the build is over when nobody holds it.
    """
    if pid == os.getpid():
        return temp not in _BUILDING
    if not _alive(pid):
        return True
    return not _locked(temp)


def _locked(database: Path) -> bool:
    """Whether another process holds a lock on the DuckDB file ``database`` (``True`` when
    that cannot be told). Never called on a file this process has open: closing a file
    drops every lock the process holds on it."""
    try:
        import fcntl
    except ImportError:  # Windows: no way to tell, so it may be in use
        return True
    try:
        descriptor = os.open(database, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:  # only its log or spill directory is left: nothing holds it
        return False
    except OSError:
        return True
    try:
        fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(descriptor)
    return False


def _remove(leftover: Path) -> None:
    """Delete a file or a directory tree, if it can be."""
    with contextlib.suppress(OSError):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        else:
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but belongs to someone else
        return True
    return True


def connect_read_only(path: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a claims database, with the SQL tool's settings.

    DuckDB shares one instance per file within a process and refuses a second connection
    with other settings, so everything that reads the file next to the ``SQL`` tool (schema
    for a prompt, golden references) opens it the way the tool does.
    """
    try:
        from loopwright.sql.duckdb import open_read_only
    except ImportError:  # the SQL tool's package is absent: a plain read-only connection
        import duckdb

        return duckdb.connect(os.fspath(path), read_only=True)
    return open_read_only(path)


def database_schema(path: str | os.PathLike[str]) -> dict[str, list[tuple[str, str]]]:
    """``{table: [(column, type)]}`` as read from a DuckDB file (for ``sqlcheck``, prompts)."""
    con = connect_read_only(path)
    try:
        rows = con.execute(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name = 'main' AND NOT internal ORDER BY table_name, column_index"
        ).fetchall()
    finally:
        con.close()
    schema: dict[str, list[tuple[str, str]]] = {}
    for table, column, data_type in rows:
        schema.setdefault(str(table), []).append((str(column), str(data_type)))
    return schema


def _check_size(rx_claims: int) -> None:
    if not isinstance(rx_claims, int) or rx_claims < MIN_RX_CLAIMS:
        raise ValueError(
            f"rx_claims must be a whole number of at least {MIN_RX_CLAIMS:,}, got {rx_claims!r}; "
            f"pass a larger size (the default is {DEFAULT_RX_CLAIMS:,})."
        )
    if rx_claims > MAX_RX_CLAIMS:
        raise ValueError(
            f"rx_claims {rx_claims:,} is more than the generator makes ({MAX_RX_CLAIMS:,}, "
            f"about 6 GiB); pass a smaller size (the default is {DEFAULT_RX_CLAIMS:,})."
        )


def _check_seed(seed: int) -> None:
    """A seed is a whole number that fits in 64 bits (signed).

    The random draws use the seed modulo 2**64, so larger seeds would repeat smaller ones;
    ``True`` would be seed 1 under another file name.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or not MIN_SEED <= seed <= MAX_SEED:
        raise ValueError(
            f"seed must be a whole number from {MIN_SEED:,} to {MAX_SEED:,}, got {seed!r}; "
            f"pass an int such as the default, {DEFAULT_SEED}."
        )


def _make_directory(directory: Path) -> None:
    """Create the directory a database goes in; a :class:`DatabaseBuildError` saying why
    and what to do when it cannot be."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(directory, exc) from exc


def _unwritable(directory: Path, exc: OSError) -> DatabaseBuildError:
    """The error for a directory the claims database cannot be written into."""
    where = "build the database elsewhere (LOOPWRIGHT_HOME sets the data directory)"
    blocker = next((p for p in (directory, *directory.parents) if p.is_file()), None)
    if blocker is not None:
        return DatabaseBuildError(
            f"{blocker} is a file, where the directory {directory} should be; move that file "
            f"away, or {where}."
        )
    reason = exc.strerror or type(exc).__name__
    if exc.filename:
        reason = f"{reason}: {exc.filename}"
    return DatabaseBuildError(
        f"{directory} is not a writable directory ({reason}); make it writable, or {where}."
    )


def _check_not_a_directory(target: Path) -> None:
    if target.is_dir():
        raise IsADirectoryError(
            f"{target} is a directory, not a database file; pass the path of a .duckdb file "
            f"(e.g. {target / 'claims.duckdb'})."
        )


@contextlib.contextmanager
def _build_lock(target: Path, waiting: Callable[[], None] = lambda: None) -> Iterator[None]:
    """An exclusive lock on ``<target>.lock``: blocks until a concurrent build finishes,
    calling ``waiting()`` first when it has to wait."""
    lock_path = target.with_name(target.name + ".lock")
    try:
        handle = open(lock_path, "a+b")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise _unwritable(target.parent, exc) from exc
    with handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory lock; the atomic rename still protects
            yield
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting()
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m loopwright.healthcare.data --rows N --out PATH``: build a database."""
    parser = argparse.ArgumentParser(
        prog="python -m loopwright.healthcare.data",
        description="Generate the synthetic healthcare claims database (DuckDB).",
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_RX_CLAIMS, help="rx claims")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", help="the .duckdb file (default: in the loopwright data dir)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the file exists")
    args = parser.parse_args(argv)
    if not MIN_RX_CLAIMS <= args.rows <= MAX_RX_CLAIMS:
        parser.error(f"--rows must be from {MIN_RX_CLAIMS:,} to {MAX_RX_CLAIMS:,}")
    if not MIN_SEED <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be from {MIN_SEED:,} to {MAX_SEED:,}")

    def show(fraction: float, message: str) -> None:
        print(f"\r{fraction:6.1%}  {message:<60}", end="", file=sys.stderr, flush=True)

    target = (
        Path(args.out).expanduser() if args.out else default_database_path(args.rows, args.seed)
    )
    if target.is_dir():
        parser.error(f"--out {target} is a directory; pass the path of a .duckdb file")
    started = time.perf_counter()
    if args.force or not target.exists():
        try:
            build_database(target, rx_claims=args.rows, seed=args.seed, progress=show)
        except DatabaseBuildError as exc:
            print(file=sys.stderr)
            parser.exit(1, f"error: {exc}\n")
        print(file=sys.stderr)
        elapsed = time.perf_counter() - started
        print(f"built {target} in {elapsed:.1f} s ({args.rows / elapsed:,.0f} rx claims/s)")
    else:
        print(f"{target} already exists (use --force to rebuild)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
