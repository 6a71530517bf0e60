"""Models, LoRA adapters and datasets named by a Hub id: which of the repo's files to fetch, fetched
once into the Hugging Face cache at a revision, and the cached copy when the Hub cannot be reached.

Models and adapters: top-level files only, configs, tokenizer files and weights under the names
transformers and peft save (a repo's `onnx/`, `gguf/` or original-checkpoint copies are not
downloaded). Datasets: what the caller picks (the card, one config/split's data files)."""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mosaic.errors import MosaicError

_SIDE_FILES = re.compile(r"[^/]+\.(json|jinja|tiktoken)|merges\.txt|vocab\.txt|tokenizer\.model|spiece\.model")
_MODEL_WEIGHTS = (re.compile(r"model(-\d+-of-\d+)?\.safetensors"), re.compile(r"pytorch_model(-\d+-of-\d+)?\.bin"))
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def is_hub_id(spec: str) -> bool:
    """ORG/NAME, as the Hub spells a repo (not a relative or absolute path)."""
    return spec.count("/") == 1 and not spec.startswith((".", "/")) and not spec.endswith("/")


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


def fetch_hub_snapshot(repo_id: str, revision: str | None, kind: HubKind, timeout: float = 10.0) -> tuple[str, str]:
    """(snapshot folder, commit) of a Hub repo in the Hugging Face cache: the files `kind.pick` chooses,
    downloaded at the revision's current commit (default: main); or, when the Hub cannot be reached (one
    try of `timeout` s, no retries), the cached snapshot of that revision, with a note on stderr."""
    from huggingface_hub import HfApi, constants, snapshot_download, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HTTPError, RepositoryNotFoundError, RevisionNotFoundError

    label = f"{kind.noun} {repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    where = {"repo_type": kind.repo_type, "revision": revision}
    try:
        info = HfApi().repo_info(repo_id, timeout=timeout, **where)
    except GatedRepoError:
        raise MosaicError(f"{label}: gated on the Hub; accept its terms on huggingface.co/{repo_id} and log in "
                          "(`hf auth login`, or set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise MosaicError(f"{label}: the Hub repo has no such branch, tag or commit") from None
    except RepositoryNotFoundError:
        raise MosaicError(f"{label}: no such repo on the Hub (a private one needs `hf auth login` or "
                          "HF_TOKEN)") from None
    except (HTTPError, OSError) as exc:  # offline, refused, timed out, HF_HUB_OFFLINE=1, a server error
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        found = try_to_load_from_cache(repo_id, kind.anchor, **where)
        folder = Path(found).parent if isinstance(found, str) else None
        cached = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder else []
        if not kind.pick(cached):
            download = "hf download " + ("" if kind.repo_type == "model" else f"--repo-type {kind.repo_type} ")
            copy = "copy" if folder is None else "complete copy"
            raise MosaicError(f"cannot load {label}: the Hub cannot be reached ({reason}) and the Hugging Face "
                              f"cache ({constants.HF_HUB_CACHE}) holds no {copy} of it; pass a local folder with "
                              f"{kind.flag}, or fetch it where there is network (`{download}{repo_id}`)") from None
        if (repo_id, folder.name) not in _NOTED:  # once per process, however many files are read from it
            _NOTED.add((repo_id, folder.name))
            print(f"mosaic: the Hub cannot be reached ({reason}); using the cached copy of {repo_id} "
                  f"(commit {folder.name})", file=sys.stderr)
        return str(folder), folder.name
    files = kind.pick([s.rfilename for s in info.siblings or []])
    if not files:
        raise MosaicError(f"{label}: the Hub repo has no {kind.needs}")
    # by the revision's name, so the cache records where it points (refs/) for later offline runs
    folder = snapshot_download(repo_id, allow_patterns=files, **where)
    return folder, Path(folder).name


_NOTED: set[tuple[str, str]] = set()  # (repo, commit) pairs whose offline use was reported


def _dataset(pick: Callable[[list[str]], list[str]], needs: str) -> HubKind:
    return HubKind("dataset", "--data", pick, "README.md", needs, repo_type="dataset")


_CARD = _dataset(lambda names: ["README.md"] if "README.md" in names else [], "README.md dataset card")


def fetch_dataset_card(repo_id: str) -> tuple[str, str]:
    """(snapshot folder holding README.md, commit) of a Hub dataset's main branch."""
    return fetch_hub_snapshot(repo_id, None, _CARD)


def fetch_dataset_files(repo_id: str, commit: str, patterns: list[str], what: str) -> str:
    """The snapshot folder at `commit` holding the card and the files matching `patterns` (globs from
    the repo root, as a card's data_files paths); `what` names them in errors."""

    def pick(names: list[str]) -> list[str]:
        data = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
        return sorted(["README.md", *data]) if data and "README.md" in names else []

    return fetch_hub_snapshot(repo_id, commit, _dataset(pick, f"data files for {what} (card paths {patterns})"))[0]
