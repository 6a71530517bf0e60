"""Models, LoRA adapters and datasets named by a Hub id: which of the repo's files to fetch, fetched
once into the Hugging Face cache at a revision's commit, and the cached copy when the Hub cannot be
reached (network down, refused or timed out, HF_HUB_OFFLINE=1, a server error).

Models and adapters: top-level files only, configs, tokenizer files and weights under the names
transformers and peft save (a repo's `onnx/`, `gguf/` or original-checkpoint copies are not
downloaded). Datasets: the card, then one config/split's data files.

The Hub is asked once per repo and revision (for 5 minutes, in a long-running process), with a
timeout and no retries; once it could not be reached, the process works from the cache without
asking again for a minute."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosaic.errors import MosaicError, first_line

# Files a tokenizer reads its vocabulary from; a local model folder needs one of them.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt", "tiktoken.model")
# Beside a Hub model's weights: configs, chat templates and every tokenizer file (so that a fetched
# snapshot passes the same tokenizer check as a local folder).
_SIDE_FILES = re.compile(r"[^/]+\.(json|jinja|tiktoken)|merges\.txt|[^/]*tokenizer\.model|sentencepiece\.bpe\.model|"
                         r"spm\.model|" + "|".join(map(re.escape, TOKENIZER_FILES)))
_MODEL_WEIGHTS = (re.compile(r"model(-\d+-of-\d+)?\.safetensors"), re.compile(r"pytorch_model(-\d+-of-\d+)?\.bin"))
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def is_hub_id(spec: str) -> bool:
    """Shaped as ORG/NAME, as the Hub spells a repo (not a relative, absolute or home path)."""
    return spec.count("/") == 1 and not spec.startswith((".", "/", "~")) and not spec.endswith("/")


def model_files(repo_files: list[str]) -> list[str]:
    """What a causal LM needs (sorted): top-level configs and tokenizer files, and its weights,
    model*.safetensors where the repo has them, else pytorch_model*.bin; [] without such weights."""
    for weights in _MODEL_WEIGHTS:
        chosen = [f for f in repo_files if weights.fullmatch(f)]
        if chosen:
            return sorted(chosen + [f for f in repo_files if _SIDE_FILES.fullmatch(f)])
    return []


def adapter_files(repo_files: list[str]) -> list[str]:
    """What a peft LoRA adapter needs (sorted): adapter_config.json and one weights file (safetensors
    first), with our training_card.json when present; [] when either of the first two is missing."""
    weights = [f for f in _ADAPTER_WEIGHTS if f in repo_files][:1]
    if "adapter_config.json" not in repo_files or not weights:
        return []
    return sorted(["adapter_config.json", *weights, *(["training_card.json"] if "training_card.json" in repo_files
                                                       else [])])


def weight_files(kind: HubKind, folder: str | Path) -> list[Path]:
    """The weight files `kind.pick` takes from a snapshot folder (what a weights hash covers: other
    files a fuller download left there do not change it)."""
    folder = Path(folder)
    names = kind.pick(sorted(p.name for p in folder.iterdir()))
    return [folder / n for n in names if n.endswith((".safetensors", ".bin"))]


@dataclass(frozen=True)
class HubKind:
    """One kind of Hub repo: the files to fetch, the file that marks a cached copy, and its names in errors."""

    noun: str
    flag: str
    pick: Callable[[list[str]], list[str]]
    anchor: str
    needs: str
    repo_type: str = "model"


MODEL_FILES = HubKind("model", "--model", model_files, "config.json", "weights transformers loads at its top "
                      "level (model.safetensors, model-NNNNN-of-NNNNN.safetensors or pytorch_model*.bin)")
ADAPTER_FILES = HubKind("adapter", "--adapter", adapter_files, "adapter_config.json", "adapter_config.json "
                        "with adapter_model.safetensors or adapter_model.bin at its top level")

# What this process learnt from the Hub: (repo type, repo, revision) -> (when, repo info), kept INFO_S;
# and, for UNREACHABLE_S after a failed try, (when, why) it could not be reached.
INFO_S, UNREACHABLE_S = 300.0, 60.0
_INFO: dict[tuple[str, str, str | None], tuple[float, Any]] = {}
_UNREACHABLE: list[tuple[float, str]] = []
_NOTED: set[tuple[str, str]] = set()  # (repo, commit) pairs whose offline use was reported


def fetch_hub_snapshot(repo_id: str, revision: str | None, kind: HubKind, timeout: float = 10.0) -> tuple[str, str]:
    """(snapshot folder, commit) of a Hub repo in the Hugging Face cache: the files `kind.pick` chooses,
    downloaded at the revision's current commit (default: main); or, when the Hub cannot be reached, the
    cached snapshot of that revision, with a note on stderr."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    label = f"{kind.noun} {repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise _named(exc, label) from None
    info = _repo_info(repo_id, revision, kind.repo_type, label, timeout)
    if info is None:
        return _cached(repo_id, revision, kind, label)
    files = kind.pick([s.rfilename for s in info.siblings or []])
    if not files:
        raise MosaicError(f"{label}: the Hub repo has no {kind.needs}")
    try:
        folder = snapshot_download(repo_id, repo_type=kind.repo_type, revision=info.sha, allow_patterns=files)
    except Exception as exc:  # gated files (the repo's info is public), a dropped connection, a full disk
        raise _named(exc, label) from None
    if revision != info.sha:  # downloaded by commit: record where the branch or tag points, for offline runs
        ref = Path(folder).parents[1] / "refs" / (revision or "main")
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(info.sha)
    return folder, info.sha


def _repo_info(repo_id: str, revision: str | None, repo_type: str, label: str, timeout: float):
    """The Hub's info on the repo at `revision` (remembered for INFO_S); None when the Hub cannot be
    reached (then, and without asking again, for UNREACHABLE_S)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, HTTPError

    key, now = (repo_type, repo_id, revision), time.monotonic()
    if key in _INFO and now - _INFO[key][0] < INFO_S:
        return _INFO[key][1]
    if unreachable_reason() is not None:
        return None
    try:
        _INFO[key] = (now, HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision, timeout=timeout))
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status is not None and status < 500 and status != 429:
            raise _named(exc, label) from None
        _UNREACHABLE[:] = [(now, f"HTTP {status}")]
        return None
    except (HTTPError, OSError) as exc:  # network down, refused, timed out; HF_HUB_OFFLINE=1
        _UNREACHABLE[:] = [(now, " ".join(str(exc).split())[:160] or type(exc).__name__)]
        return None
    return _INFO[key][1]


def unreachable_reason() -> str | None:
    """Why the Hub could not be reached at the last try, within the last UNREACHABLE_S seconds; else None."""
    if _UNREACHABLE and time.monotonic() - _UNREACHABLE[0][0] < UNREACHABLE_S:
        return _UNREACHABLE[0][1]
    return None


def hub_unreachable(repo_id: str, repo_type: str = "dataset", timeout: float = 10.0) -> str | None:
    """None when the Hub answers for the repo, else why it cannot be reached (one try, as for fetches);
    a repo the Hub does not have, or refuses, is a named error."""
    info = _repo_info(repo_id, None, repo_type, f"{repo_type} {repo_id!r}", timeout)
    return None if info is not None else unreachable_reason()


@contextmanager
def offline_libraries() -> Iterator[None]:
    """huggingface_hub and datasets in their offline mode (as under HF_HUB_OFFLINE=1) inside the block:
    they read their caches without trying the network, for a Hub found unreachable."""
    import datasets.config
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


def _named(exc: Exception, label: str) -> MosaicError:
    """One line for an error the Hub answered with."""
    from huggingface_hub import errors

    first = first_line(exc, 300)
    if isinstance(exc, errors.HFValidationError):
        return MosaicError(f"{label}: no such local folder, and not a valid Hub id ({first})")
    if isinstance(exc, errors.GatedRepoError):
        return MosaicError(f"{label}: gated on the Hub; accept its terms on its huggingface.co page and log in "
                           "(`hf auth login`, or set HF_TOKEN)")
    if isinstance(exc, errors.RevisionNotFoundError):
        return MosaicError(f"{label}: the Hub repo has no such branch, tag or commit")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return MosaicError(f"{label}: no such local folder, and no such repo on the Hub (a private one needs "
                           "`hf auth login` or HF_TOKEN)")
    return MosaicError(f"{label}: {type(exc).__name__}: {first}")


def _cached(repo_id: str, revision: str | None, kind: HubKind, label: str) -> tuple[str, str]:
    """The cached snapshot of the revision, complete by the download's own file list where the cache
    keeps one (trees/), else by `kind.pick` finding what it needs in the folder."""
    from huggingface_hub import constants, get_cached_repo_tree, try_to_load_from_cache
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    reason = unreachable_reason()
    found = try_to_load_from_cache(repo_id, kind.anchor, repo_type=kind.repo_type, revision=revision)
    folder = Path(found).parent if isinstance(found, str) else None
    have = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder else []
    try:
        listed = [f.path for f in get_cached_repo_tree(repo_id, repo_type=kind.repo_type, revision=folder.name)
                  ] if folder else []
    except CachedRepoTreeNotFoundError:  # a snapshot filled by another tool (transformers, hf download)
        listed = have
    wanted = kind.pick(listed)
    if not wanted or not set(wanted) <= set(have):
        download = "hf download " + ("" if kind.repo_type == "model" else f"--repo-type {kind.repo_type} ")
        copy = "copy" if folder is None else "complete copy"
        raise MosaicError(f"cannot load {label}: the Hub cannot be reached ({reason}) and the Hugging Face cache "
                          f"({constants.HF_HUB_CACHE}) holds no {copy} of it; pass a local folder with {kind.flag}, "
                          f"or fetch it where there is network (`{download}{repo_id}`)")
    if (repo_id, folder.name) not in _NOTED:  # once per process, however many files are read from it
        _NOTED.add((repo_id, folder.name))
        print(f"mosaic: the Hub cannot be reached ({reason}); using the cached copy of {repo_id} "
              f"(commit {folder.name})", file=sys.stderr)
    return str(folder), folder.name


def _dataset(pick: Callable[[list[str]], list[str]], needs: str) -> HubKind:
    return HubKind("dataset", "--data", pick, "README.md", needs, repo_type="dataset")


_CARD = _dataset(lambda names: ["README.md"] if "README.md" in names else [], "README.md dataset card")


def fetch_dataset_card(repo_id: str) -> tuple[str, str]:
    """(snapshot folder holding README.md, commit) of a Hub dataset's main branch."""
    return fetch_hub_snapshot(repo_id, None, _CARD)


def fetch_dataset_files(repo_id: str, commit: str, patterns: list[str], what: str) -> str:
    """The snapshot folder at `commit` holding the card and the files matching `patterns` (globs from
    the repo root, as a card's data_files paths, matched as `datasets` does); `what` names them."""
    from fsspec.utils import glob_translate

    matchers = [re.compile(glob_translate(p)) for p in patterns]

    def pick(names: list[str]) -> list[str]:
        data = [n for n in names if any(m.fullmatch(n) for m in matchers)]
        return sorted(["README.md", *data]) if data and "README.md" in names else []

    return fetch_hub_snapshot(repo_id, commit, _dataset(pick, f"data files for {what} (card paths {patterns})"))[0]
