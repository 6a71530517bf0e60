"""Grid replies a chat model might send (valid and broken ones) and theme files, for the grid builder's tests."""

from __future__ import annotations

import json
import random

BANK = """harbor lantern quartz meadow violin glacier saffron pylon orchard compass ember tundra falcon
monsoon copper lattice prairie beacon walnut canyon marble thistle comet parchment reef sparrow anvil
velvet juniper cobalt delta furnace lagoon mosaic nectar oasis pepper quiver ripple summit tapestry
umbrella vortex willow yarrow zephyr acorn basalt cinder dune estuary fjord gravel hazel iris jasper
kelp loom mesa nebula opal pebble quarry raven sable timber upland valley wharf yacht bramble clover
drizzle fennel granite heron ivory jigsaw kiln lichen mantle nutmeg osprey plume quill rudder shale
tidal urchin vessel wren alder bison cedar dingo egret ferret gecko hickory ibis jackal koala lemur
magpie narwhal ocelot panther quokka rhino salmon tapir vulture wombat badger cricket dolphin""".split()

CODE_PROGRAM = "```python\nimport sys\nprint(len(sys.stdin.read()))\n```"


def words(seed: str, n: int = 45) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(BANK) for _ in range(n))


def variants(theme: str, n: int = 4) -> list[str]:
    frames = ["Write about {}.", "Tell me, in your own way, about {}.", "Here is my request: {}. Go.",
              "I would like a short piece on {}.", "Could you take on {}?", "Consider {} and respond."]
    return [frames[v].format(theme) for v in range(n)]


def grid(theme: str, salt: str = "", p: int = 4, r: int = 4, n_words: int = 45) -> dict:
    """A grid that passes every check: on-theme variants, unrelated word salads as responses."""
    return {"prompt_variants": variants(theme, p),
            "responses": [[{"approach": f"approach {j}", "text": words(f"{theme}|{salt}|{v}|{j}", n_words)}
                           for j in range(r)] for v in range(p)]}


def reply(obj: dict, fence: bool = False) -> str:
    text = json.dumps(obj)
    return f"Here is the item:\n```json\n{text}\n```\nHope it helps." if fence else text


def off_theme(theme: str) -> dict:
    obj = grid(theme)
    obj["prompt_variants"][2] = "Explain how a company should calculate quarterly payroll tax withholding."
    return obj


def duplicate(theme: str) -> dict:
    obj = grid(theme)
    obj["responses"][1][3] = dict(obj["responses"][1][0])
    return obj


def wrong_count(theme: str) -> dict:
    obj = grid(theme)
    obj["prompt_variants"].pop()
    obj["responses"].pop()
    return obj


def theme(base: str, domain: str = "creative", **extra) -> dict:
    return {"domain": domain, "subdomain": "misc", "difficulty": "introductory", "response_type": "open-ended",
            "base_theme": base, **extra}


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
