"""Generators of grid replies for `mosaic build mosaic --themes`: one interface, one registry.

A generator is a module in this package named after it that defines
`GENERATOR = GeneratorSpec(name, help, add_arguments, create)`. The registry lists the
package's modules, so adding a generator is one new file. Modules import their heavy
dependencies inside `create`, so listing them (for `--help`) stays light.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from mosaic.errors import MosaicError
from mosaic.hub import did_you_mean


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 8192


@dataclass(frozen=True)
class Reply:
    """One completion; token counts are None when the backend does not report them."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


class GenerationError(RuntimeError):
    """This request failed after the generator's own retries; the build re-queues the item."""


class FatalGenerationError(GenerationError):
    """Every request would fail the same way (credentials, URL, model name): the build stops."""


class Generator(ABC):
    """Turns chat messages into a Reply. `generate` may be called from `concurrency` threads at once."""

    description: str = ""
    model_id: str = ""
    concurrency: int = 1

    @abstractmethod
    def generate(self, messages: list[dict[str, str]], seed: int) -> Reply: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections, model memory)."""


@dataclass(frozen=True)
class GeneratorSpec:
    name: str
    help: str
    add_arguments: Callable[[argparse._ArgumentGroup], None]
    create: Callable[[argparse.Namespace, Sampling], Generator]


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str) -> GeneratorSpec:
    """The spec of generator `name`; an unknown name gets a did-you-mean."""
    if name not in names():
        raise MosaicError(f"unknown generator {name!r} {did_you_mean(name, names())}")
    return importlib.import_module(f"{__name__}.{name}").GENERATOR


def add_all_arguments(parser: argparse.ArgumentParser) -> None:
    """One argument group per generator; their flags default to None (unset). `args._generator_flags`
    maps each generator to its (dest, flag) pairs, so a flag of another generator can be refused."""
    owned = {}
    for name in names():
        spec = load(name)
        first = len(parser._actions)  # argparse keeps actions in order: the ones this generator adds
        spec.add_arguments(parser.add_argument_group(f"generator {name!r} ({spec.help})"))
        owned[name] = tuple((a.dest, a.option_strings[0]) for a in parser._actions[first:])
    parser.set_defaults(_generator_flags=owned)


def foreign_flags(args: argparse.Namespace, name: str) -> list[str]:
    """Flags given on the command line that belong to generators other than `name`."""
    return [f"{flag} (a flag of --generator {other})" for other, flags in getattr(args, "_generator_flags", {}).items()
            if other != name for dest, flag in flags if getattr(args, dest, None) is not None]
