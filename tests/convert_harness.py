"""Helpers for the converter tests: run `mosaic build` through the real CLI, write parquet fixtures with
the sources' Hub Arrow schemas, and read back what a build wrote (load_dataset, mosaic validate, card)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FIXTURES = Path(__file__).parent / "fixtures"

S, I64, F64 = pa.string(), pa.int64(), pa.float64()


def _struct(**fields) -> pa.DataType:
    return pa.struct([(k.replace("__", " ").replace("_dash_", "-"), v) for k, v in fields.items()])


_RATED = _struct(Rating=S, Rationale=S, Rationale__For__Rating=S, Type=pa.list_(S))
_TESTS = _struct(input=pa.list_(S), output=pa.list_(S))
_SOLUTIONS = _struct(language=pa.list_(I64), solution=pa.list_(S))
_TARGETS = _struct(choices=pa.list_(S), labels=pa.list_(pa.int32()))
# The Arrow schemas of the sources' Hub parquet files (their `dataset_info` features).
HUB_SCHEMAS = {
    "ultrafeedback": pa.schema([
        ("source", S), ("instruction", S), ("models", pa.list_(S)),
        ("completions", pa.list_(_struct(
            annotations=_struct(helpfulness=_RATED, honesty=_struct(Rating=S, Rationale=S),
                                instruction_following=_struct(Rating=S, Rationale=S), truthfulness=_RATED),
            critique=S, custom_system_prompt=S, fine_dash_grained_score=F64, model=S, overall_score=F64,
            principle=S, response=S))),
        ("correct_answers", pa.list_(S)), ("incorrect_answers", pa.list_(S))]),
    "nectar": pa.schema([("prompt", S), ("answers", pa.list_(_struct(answer=S, model=S, rank=F64))),
                         ("turns", I64), ("num_responses", I64), ("source", pa.list_(S)),
                         ("good_natured", pa.bool_())]),
    "gold": pa.schema([("instruction", S), ("input", S), ("answers", pa.list_(S)), ("gold_scores", pa.list_(F64))]),
    "gold_pairs": pa.schema([("instruction", S), ("input", S), ("answers", pa.list_(S)), ("preference", I64)]),
    "codecontests": pa.schema([
        ("name", S), ("description", S), ("public_tests", _TESTS), ("private_tests", _TESTS),
        ("generated_tests", _TESTS), ("source", I64), ("difficulty", I64), ("solutions", _SOLUTIONS),
        ("incorrect_solutions", _SOLUTIONS), ("cf_contest_id", I64), ("cf_index", S), ("cf_points", F64),
        ("cf_rating", I64), ("cf_tags", pa.list_(S)), ("is_description_translated", pa.bool_()),
        ("untranslated_description", S), ("time_limit", _struct(seconds=I64, nanos=I64)),
        ("memory_limit_bytes", I64), ("input_file", S), ("output_file", S)]),
    "mmlu": pa.schema([("question", S), ("subject", S), ("choices", pa.list_(S)), ("answer", I64)]),
    "truthfulqa": pa.schema([("question", S), ("mc1_targets", _TARGETS), ("mc2_targets", _TARGETS)]),
}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def to_parquet(rows_or_jsonl, source: str, out: Path) -> Path:
    """Write rows (or a JSONL fixture) as parquet with the source's Hub schema."""
    rows = read_jsonl(rows_or_jsonl) if isinstance(rows_or_jsonl, (str, Path)) else rows_or_jsonl
    pq.write_table(pa.Table.from_pylist(rows, schema=HUB_SCHEMAS[source]), out)
    return out


def build(source: str, *args, out: Path) -> tuple[int, str, str]:
    """`mosaic build SOURCE ARGS --out OUT` in this process: (exit code, stdout, stderr)."""
    from mosaic.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["build", source, *map(str, args), "--out", str(out)])
    return rc, stdout.getvalue(), stderr.getvalue()


def load(folder: Path, config: str, split: str) -> list[dict]:
    """The split through `datasets.load_dataset`, rebuilt from the files (datasets' cache key for a local
    folder can match an earlier build's, which would hand back stale rows)."""
    from datasets import load_dataset

    return load_dataset(str(folder), config, split=split, download_mode="force_redownload").to_list()


def validate(folder: Path) -> tuple[int, str]:
    from mosaic.cli import main

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(["validate", str(folder)])
    return rc, stdout.getvalue()


def card(folder: Path, config: str) -> dict:
    from mosaic.hub import read_manifest

    return read_manifest(folder)[config]


def built(source: str, *args, out: Path) -> str:
    """Build, check exit 0 and that `mosaic validate` passes; returns stdout (the summary)."""
    rc, stdout, stderr = build(source, *args, out=out)
    assert rc == 0, stderr
    vrc, report = validate(out)
    assert vrc == 0, report
    return stdout
