"""Shared machinery of the source converters (ultrafeedback, nectar, gold, gold_pairs, codecontests,
mmlu, truthfulqa): read a source, map its Arrow batches to common-schema rows, apply the error
policy, and account for every row.

A converter module declares a `Source` (Hub id, splits, licence, and `fields`: the fields its
`to_record(row, ctx)` reads) and calls `run`. Reading (builders/convert_io.py): the Hub id by default
(streamed for large sources), or `--source-file [SPLIT=]FILE`, a parquet or JSONL file in the
source's own row format, through the same `datasets.load_dataset` path (`--splits` is for the Hub
only). Every split is opened and its format checked before any is converted. Only the declared
fields are decoded from Arrow (builders/convert_arrow.py); a file that lacks a required field, or
stores one with the wrong type for every row, is refused once, up front, naming file and split. A
field whose rows disagree on its type (which `datasets` stores as its Json type) and text that is not
UTF-8 are checked row by row: `wrong_type` / `not_utf8` rows, under the error policy below. A split
that ends with no row written stops the build (datasets cannot load an empty split), with its
rejection counts.

Rows: `to_record` returns a `Record`/`MCQRecord` or raises `RowError(field, reason, detail)`.
`--on-error raise` stops at the first such row naming split, row, field and reason;
`--on-error skip` drops it and counts it by reason. Things a converter drops inside a kept row
(an empty response text, say) are counted through `ctx.note`. Row numbers are 0-based positions in
the source split; sources without ids get `item_id = "<split>-<row>"`.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import gc
import json
import os
import random
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builders.convert_arrow import RowError, project_schema, row_reader
from builders.convert_io import add_arguments as add_arguments  # (the converters call convert.add_arguments)
from builders.convert_io import check_format, first_line, inputs, open_source, origin
from builders.result import BuildResult
from mosaic.errors import MosaicError
from mosaic.schema import MCQ, RECORD

HIDDEN = ("_reject", "_detail", "_notes")  # per-row bookkeeping columns, dropped before export


@dataclass(frozen=True)
class Source:
    """`splits` maps our split name -> the source's split name. `fields` declares what `to_record`
    reads: {name: "str" | "num" | "int" | "bool" | "scalar" | {sub-fields} | [element]}; a name ending in "?"
    may be absent from the file (read as null). A {sub-fields} spec also matches a list of structs."""

    name: str
    hub_id: str
    splits: dict[str, str]
    fields: dict[str, Any]
    license: str
    layout: str = RECORD
    hub_config: str | None = None
    streaming: bool = True
    default_splits: tuple[str, ...] | None = None  # when not all of `splits`
    prepare: Callable | None = None  # optional pa.Table -> pa.Table step on the projected batch (vectorised)


@dataclass
class Ctx:
    """Where `to_record` is: split, 0-based source row, options; `note` counts a kept row's event."""

    split: str
    row: int
    opts: Mapping[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def item_id(self) -> str:
        return f"{self.split}-{self.row}"

    def note(self, what: str) -> None:
        self.notes.append(what)

    def rng(self) -> random.Random:
        """A generator seeded by (seed, split, row): independent of batching and --num-proc."""
        return random.Random(f"{self.opts['seed']}/{self.split}/{self.row}")

    def keep(self, n: int) -> list[int]:
        """Indices of the responses to keep: all, or a seeded random --responses-per-prompt, in order."""
        k = self.opts.get("responses_per_prompt")
        if k is None or n <= k:
            return list(range(n))
        return sorted(self.rng().sample(range(n), k))


_EXTRA = json.JSONEncoder(sort_keys=True, ensure_ascii=False)


def extra_json(extra: Mapping[str, Any]) -> str | None:
    """meta.extra text: what Meta.with_extra writes (sorted-key JSON, None when empty), without json.dumps's
    per-call encoder set-up; keys whose value is None are left out."""
    kept = {k: v for k, v in extra.items() if v is not None}
    return _EXTRA.encode(kept) if kept else None


def need(obj: Mapping[str, Any] | None, key: str, path: str) -> Any:
    """obj[key], or RowError missing_field when absent or null."""
    value = None if obj is None else obj.get(key)
    if value is None:
        raise RowError(path, "missing_field", "absent or null")
    return value


def prompt_text(value: str, path: str) -> str:
    if not value.strip():
        raise RowError(path, "empty_prompt", "blank text")
    return value


def rank_by_score(responses: list) -> None:
    """rank = 1 + the number of responses with a strictly higher score (ties share the best rank);
    responses without a score get no rank."""
    negated = sorted(-r.score for r in responses if r.score is not None)
    for r in responses:
        if r.score is not None:
            r.rank = 1 + bisect.bisect_left(negated, -r.score)


def check_choices(choices: list, path: str) -> list[str]:
    """Multiple-choice options: at least two, none null or blank, no duplicates (else bad_choices)."""
    for j, c in enumerate(choices):
        if c is None or not c.strip():
            raise RowError(f"{path}[{j}]", "bad_choices", "null or blank option")
    if len(choices) < 2:
        raise RowError(path, "bad_choices", f"{len(choices)} option(s), need at least 2")
    if len(set(choices)) != len(choices):
        dup = next(c for c in choices if choices.count(c) > 1)
        raise RowError(path, "bad_choices", f"duplicate option {dup[:40]!r}")
    return choices


# ---------------------------------------------------------------- conversion


@functools.cache
def output_schema(layout: str):
    """The layout's Arrow schema plus the bookkeeping columns (cached: it is needed once per batch)."""
    import pyarrow as pa

    from mosaic.schema import FEATURES

    base = FEATURES[layout].arrow_schema
    return pa.schema(list(base) + [pa.field("_reject", pa.string()), pa.field("_detail", pa.string()),
                                   pa.field("_notes", pa.list_(pa.string()))])


def _as_row(rec: Any) -> dict[str, Any]:
    """Record/MCQRecord -> row dict without dataclasses.asdict's deep copies (the hot path)."""
    if not hasattr(rec, "responses"):
        return dict(vars(rec))
    return {"id": rec.id, "item_id": rec.item_id, "variant": rec.variant, "source": rec.source,
            "domain": rec.domain, "prompt": rec.prompt, "responses": [vars(r) for r in rec.responses],
            "tests": None if rec.tests is None else vars(rec.tests), "meta": vars(rec.meta)}


def convert_batch(table, indices: list[int], *, name: str, split: str, fields: dict[str, Any], layout: str,
                  to_record: Callable[[dict, Ctx], Any], opts: Mapping[str, Any], prepare: Callable | None = None,
                  where: str | None = None):
    """One Arrow batch -> one Arrow batch of output rows (a rejected row stays as nulls plus `_reject`).
    `where` (the file and split) goes into every row message."""
    import pyarrow as pa

    schema = project_schema(table.schema, fields)
    table = table.select(schema.names).cast(schema)
    gc_on = gc.isenabled()
    gc.disable()  # rows are acyclic and die with the batch: cyclic GC passes would only cost time
    try:
        read, rows = row_reader(prepare(table) if prepare else table, fields), []
        suffix = f" [{where}]" if where else ""
        for k, index in enumerate(indices):
            ctx = Ctx(split, index, opts)
            try:
                out = _as_row(to_record(read(k), ctx))
            except RowError as exc:
                at = f"{name} split {split} row {index}: {exc}{suffix}"
                if opts["on_error"] == "raise":
                    raise MosaicError(f"{at}; fix the row or pass --on-error skip to drop and count such rows"
                                      ) from None
                out = {"_reject": exc.reason, "_detail": at}
            out["_notes"] = ctx.notes
            rows.append(out)
        return pa.Table.from_pylist(rows, schema=output_schema(layout))
    finally:
        if gc_on:
            gc.enable()


def convert_split(ds, source: Source, split: str, to_record: Callable, opts: Mapping[str, Any], *,
                  num_proc: int = 1, batch_size: int = 1000, path: Path | None = None):
    """Run `to_record` over a `Dataset` (Arrow batches, --num-proc) or `IterableDataset` (streamed, with a
    progress bar); returns the pa.Table of output rows, rejected placeholders and bookkeeping included.
    `path`: the file the split comes from, for messages."""
    import pyarrow as pa
    from datasets import Dataset, Features
    from tqdm.auto import tqdm

    where = origin(source, split, path)
    fn = functools.partial(convert_batch, name=source.name, split=split, fields=source.fields,
                           layout=source.layout, to_record=to_record, opts=dict(opts), prepare=source.prepare,
                           where=str(path) if path is not None else None)
    schema = output_schema(source.layout)
    features = Features.from_arrow_schema(schema)
    kw = dict(batched=True, batch_size=batch_size, with_indices=True, features=features)
    if isinstance(ds, Dataset):
        check_format(ds, source, split, path)  # refuse a file of the wrong format before any work
        with tempfile.TemporaryDirectory(prefix="mosaic-convert-") as tmp:  # (keep_in_memory is slow with processes)
            mapped = ds.with_format("arrow").map(fn, remove_columns=ds.column_names, num_proc=num_proc if num_proc > 1
                                                 else None, cache_file_name=os.path.join(tmp, "out.arrow"),
                                                 load_from_cache_file=False, desc=f"{source.name} {split}", **kw)
            if not mapped.num_rows:
                return schema.empty_table()
            sink = pa.BufferOutputStream()  # copy out of the memory-mapped temporary file before it goes
            with pa.ipc.new_stream(sink, schema) as writer:
                writer.write_table(mapped.data.table.cast(schema))
            return pa.ipc.open_stream(sink.getvalue()).read_all().combine_chunks()
    mapped = ds.with_format("arrow").map(fn, **kw).select_columns(schema.names)
    tables = []
    try:
        with tqdm(desc=f"{source.name} {split}", unit=" rows") as bar:
            for batch in mapped.iter(batch_size=batch_size):
                tables.append(batch)
                bar.update(batch.num_rows)
    except Exception as exc:  # a stream that breaks off (network) ends as one line, not a traceback
        if isinstance(exc, MosaicError):
            if str(exc).startswith("field "):  # a stream's format error, found on its first batch
                raise MosaicError(f"{where}: {exc}") from None
            raise
        done = sum(t.num_rows for t in tables)
        raise MosaicError(f"{where}: reading stopped after {done} rows ({first_line(exc)})") from exc
    return pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()


def _stats(table, layout: str, read: int) -> tuple[dict[str, Any], str]:
    """One split's account for the card, and its summary line."""
    import pyarrow.compute as pc

    dup = table.num_rows - pc.count_distinct(table["question" if layout == MCQ else "prompt"]).as_py()
    stats: dict[str, Any] = {"read": read, "written": table.num_rows, "duplicate_prompts": dup}
    line = f"read {read}, written {table.num_rows}, duplicate prompts {dup}"
    if layout == RECORD and table.num_rows:
        lengths = pc.list_value_length(table["responses"])
        rpp = {**pc.min_max(lengths).as_py(), "mean": round(pc.mean(lengths).as_py(), 3)}
        stats.update(responses_per_prompt=rpp, rows_with_tests=table.num_rows - table["tests"].null_count)
        line += f", responses per prompt min {rpp['min']} / mean {rpp['mean']} / max {rpp['max']}"
    return stats, line


def _print_rejected(examples: list[str]) -> None:
    for line in examples[:10]:
        print(f"rejected {line}")
    if len(examples) > 10:
        print(f"... and {len(examples) - 10} more rejected rows (counted by reason below)")


def run(source: Source, to_record: Callable[[dict, Ctx], Any], args: argparse.Namespace, *, doc: str,
        module: str, extra_opts: Mapping[str, Any] | None = None) -> BuildResult:
    """The whole `mosaic build SOURCE`: read each split, convert, count, and describe it for the card."""
    import pyarrow.compute as pc
    from datasets import Dataset
    from datasets.table import InMemoryTable

    from mosaic import __version__
    from mosaic.hub import ConfigSpec

    if getattr(args, "no_progress", False):
        from mosaic.models import hide_library_progress

        hide_library_progress(models=False)
    for flag in ("max_rows", "responses_per_prompt", "num_proc", "batch_size"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise MosaicError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    opts = {"seed": args.seed, "on_error": args.on_error,
            "responses_per_prompt": getattr(args, "responses_per_prompt", None), **(extra_opts or {})}
    result, counted, examples, splits, per_split = BuildResult(configs=[]), Counter(), [], {}, {}
    todo = inputs(source, args)
    opened = []
    for split, hub_split, path in todo:  # open and check every file's format before converting any split
        streaming = args.streaming if args.streaming is not None else (path is None and source.streaming)
        ds = open_source(source, args, split, hub_split, path, streaming)
        check_format(ds, source, split, path)
        opened.append((split, path, streaming, ds))
    for split, path, streaming, ds in opened:
        if args.max_rows is not None:
            ds = ds.take(args.max_rows) if streaming else ds.select(range(min(args.max_rows, len(ds))))
        table = convert_split(ds, source, split, to_record, opts, num_proc=args.num_proc,
                              batch_size=args.batch_size, path=path)
        rejected, kept = table.filter(pc.is_valid(table["_reject"])), table.filter(pc.is_null(table["_reject"]))
        split_rejects = Counter(rejected["_reject"].to_pylist())
        result.rejected.update(split_rejects)
        counted.update(pc.list_flatten(kept["_notes"]).to_pylist())
        examples += rejected["_detail"].to_pylist()
        if not kept.num_rows:  # datasets cannot load an empty split: say why it is empty instead
            _print_rejected(examples)
            why = ", ".join(f"{r} {n}" for r, n in sorted(split_rejects.items())) or "none"
            raise MosaicError(f"{origin(source, split, path)}: no row written for split {split!r} "
                              f"({table.num_rows} read; rejected: {why}); nothing to export")
        final = kept.drop_columns(list(HIDDEN))
        splits[split] = Dataset(InMemoryTable(final))
        result.read += table.num_rows
        result.written += final.num_rows
        per_split[split], result.extra[split] = _stats(final, source.layout, table.num_rows)
    _print_rejected(examples)
    result.extra.update(sorted(counted.items()))
    files = ", ".join(f"{split}={path}" for split, _, path in todo if path is not None)
    read_from = (f"local files in its row format ({files})" if files else
              f"the Hugging Face Hub ({args.hub_id}{f', config {source.hub_config}' if source.hub_config else ''})")
    notes: dict[str, Any] = {
        "mapping": " ".join(doc.split()),
        "source_splits": {ours: theirs for ours, theirs, _ in todo},
        "options": {k: v for k, v in opts.items() if k != "on_error" and v is not None},
        "per_split": per_split,
        "counted": dict(sorted(counted.items())) or "none",
    }
    provenance = f"{source.hub_id} read from {read_from} by {module}; the source's declared licence is {source.license}"
    result.configs.append(ConfigSpec(source.name, splits, source=source.name, license=source.license,
                                     provenance=provenance, builder=f"{module} (mosaic-bench {__version__})",
                                     notes=notes))
    return result
