"""Labelled prompts for the category model, read from the public data folder (see its
README for sources and licences): arena-hard-v2 subcategories, SituatedQA (whether an
answer depends on when it is asked), CLINC150 intents mapped to categories, CoNaLa intents
(code), GPTeacher instructions (code, and role play: creative) and Quora questions
(ordinary questions: `default`).

Every prompt has a split: the sources' own splits where they have them (SituatedQA dev and
CLINC test are held out), else a hash of the text, so that the same prompt always lands in
the same split and no test prompt is ever trained on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "validation", "test")

# CLINC150 intents whose answer depends on the moment, on small talk, or on health, law or
# money, or on a calculation; the other intents are assistant actions and personal data:
# `default`. Out-of-scope queries (`oos`) have no label and are left out.
CLINC = {
    "time_sensitive": (
        "weather time date exchange_rate traffic flight_status how_busy next_holiday "
        "interest_rate travel_alert gas"
    ),
    "conversation": (
        "greeting goodbye tell_joke how_old_are_you what_is_your_name are_you_a_bot "
        "do_you_have_pets what_are_your_hobbies where_are_you_from who_made_you "
        "who_do_you_work_for meaning_of_life fun_fact thank_you what_can_i_ask_you yes no maybe"
    ),
    "sensitive": (
        "credit_score improve_credit_score taxes insurance insurance_change rollover_401k apr "
        "report_fraud vaccines w2 income credit_limit"
    ),
    "math": "calculator measurement_conversion",
}
CLINC_INTENTS = {intent: name for name, intents in CLINC.items() for intent in intents.split()}
ARENA = {"coding": "code", "math": "math", "creative_writing": "creative"}
# GPT-4 instruction sets: code generation, and role play (creative: a new answer is wanted).
GPTEACHER = {
    "gpteacher_codegen-instruct.json": "code",
    "gpteacher_roleplay-simple-deduped-roleplay-instruct.json": "creative",
}
QQP_QUESTIONS = 8000  # ordinary questions, chosen by hash among the unique ones


@dataclass(frozen=True)
class Labelled:
    text: str
    category: str
    source: str
    split: str


def hashed_split(text: str, *, validation: float = 0.1, test: float = 0.2) -> str:
    """A stable split from the text alone."""
    share = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64
    if share < test:
        return "test"
    return "validation" if share < test + validation else "train"


def public_prompts(data: Path, *, qqp: int = QQP_QUESTIONS) -> list[Labelled]:
    """Every labelled prompt of the public data folder, deduplicated by text (first label
    wins, in the order of the sources above)."""
    seen: set[str] = set()
    rows: list[Labelled] = []
    for row in _sources(data / "categories", data / "qqp_pairs.jsonl", qqp):
        if row.text.strip() and row.text not in seen:
            seen.add(row.text)
            rows.append(row)
    return rows


def _lines(path: Path) -> Iterator[dict[str, object]]:
    for line in path.read_text("utf-8").split("\n"):  # prompts may hold other separators
        if line.strip():
            yield json.loads(line)


def _sources(folder: Path, qqp_path: Path, qqp: int) -> Iterator[Labelled]:
    for item in _lines(folder / "arena_hard_v2.jsonl"):
        text = str(item["prompt"])
        yield Labelled(text, ARENA[str(item["subcategory"])], "arena_hard_v2", hashed_split(text))
    for name, native in (("train", None), ("dev", "test")):
        for item in _lines(folder / f"situatedqa_temporal_{name}.jsonl"):
            text = str(item["question"])
            category = "time_sensitive" if item["is_dependent"] == "yes" else "factual"
            split = native or hashed_split(text, test=0.0)
            yield Labelled(text, category, "situatedqa", split)
    clinc = json.loads((folder / "clinc150.json").read_text("utf-8"))
    for part, split in (("train", "train"), ("val", "validation"), ("test", "test")):
        for text, intent in clinc[part]:
            yield Labelled(text, CLINC_INTENTS.get(intent, "default"), "clinc150", split)
    for item in json.loads((folder / "conala_train.json").read_text("utf-8")):
        text = item.get("rewritten_intent") or item["intent"]
        yield Labelled(str(text), "code", "conala", hashed_split(str(text)))
    for name, category in GPTEACHER.items():
        for item in json.loads((folder.parent / "incontext" / name).read_text("utf-8")):
            text = "\n".join(p for p in (item["instruction"], item["input"]) if p.strip())
            yield Labelled(text, category, "gpteacher", hashed_split(text))
    questions = {str(q) for pair in _lines(qqp_path) for q in (pair["a"], pair["b"])}
    chosen = sorted(questions, key=lambda q: hashlib.sha256(b"qqp:" + q.encode()).digest())[:qqp]
    for text in chosen:
        yield Labelled(text, "default", "qqp", hashed_split(text))
