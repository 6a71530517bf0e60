"""`mosaic build mmlu`: cais/mmlu (MIT) -> config `mmlu`, multiple-choice layout.

Mapping: one row per question; id = "mmlu/<split>-<row>/0"; question = `question` as given;
choices = `choices` in source order (lettered A, B, ... by position); answer = `answer` (the
ClassLabel index 0-3; a letter "A".."D" is accepted too); subject = the row's `subject`;
population null. Splits as the source ships them: test, validation and dev (a valid split name, kept
as `dev`); auxiliary_train only when asked for with --splits. --subject picks the Hub config
(default all); it applies to the Hub only (a --source-file is converted as it is).
Rejected rows: missing_field (null question, choices, answer or subject), empty_prompt,
bad_choices (fewer than 2, a blank or a duplicate option), bad_answer (not an index of a choice).
"""

from __future__ import annotations

import argparse
import dataclasses

from builders import convert
from builders.convert import Ctx, RowError, check_choices, need, prompt_text
from builders.result import BuildResult
from mosaic.errors import MosaicError
from mosaic.schema import MCQ, MCQRecord

HELP = "convert cais/mmlu (4-option questions in 57 subjects) into the multiple-choice layout"
EXAMPLES = """examples:
  mosaic build mmlu --out build/mcq
  mosaic build mmlu --subject abstract_algebra --splits test --out build/mcq
  mosaic build mmlu --source-file test=mmlu_all_test.parquet --out build/mcq
"""
SOURCE = convert.Source(
    name="mmlu", hub_id="cais/mmlu", hub_config="all", layout=MCQ, license="mit", streaming=False,
    splits={"test": "test", "validation": "validation", "dev": "dev", "auxiliary_train": "auxiliary_train"},
    default_splits=("test", "validation", "dev"),
    fields={"question": "str", "subject": "str", "choices": ["str"], "answer": "scalar"},
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    convert.add_arguments(p, SOURCE, responses=False)
    p.add_argument("--subject", help="Hub config: all (default) or one subject, e.g. anatomy (not with --source-file)")


def to_record(row: dict, ctx: Ctx) -> MCQRecord:
    question = prompt_text(need(row, "question", "question"), "question")
    choices = check_choices(need(row, "choices", "choices"), "choices")
    raw = need(row, "answer", "answer")
    if isinstance(raw, str):
        letter = raw.strip().upper()
        answer = ord(letter) - ord("A") if len(letter) == 1 and "A" <= letter <= "Z" else -1
    else:
        answer = int(raw) if float(raw).is_integer() else -1
    if not 0 <= answer < len(choices):
        raise RowError("answer", "bad_answer", f"{raw!r} is not the index of one of {len(choices)} choices")
    subject = need(row, "subject", "subject")
    if not subject.strip():
        raise RowError("subject", "missing_field", "blank subject")
    return MCQRecord(id=f"{SOURCE.name}/{ctx.item_id}/0", question=question, choices=choices, answer=answer,
                     subject=subject)


def build(args: argparse.Namespace) -> BuildResult:
    if args.subject is not None and args.source_file:
        raise MosaicError("--subject picks a Hub config; a --source-file is converted as it is: drop --subject "
                          "(or filter the file by its `subject` field first)")
    source = dataclasses.replace(SOURCE, hub_config=args.subject or "all")
    return convert.run(source, to_record, args, doc=__doc__, module=__name__)
