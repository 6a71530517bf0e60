"""How a prompt and a response become tokens (DESIGN §11), for training and evaluation alike.

With a chat template: prompt = the template over one user message with the generation prompt;
scored response tokens = the response text followed by the end-of-turn token that the template
puts after an assistant message. Without a template (plain format): prompt = the text and a
newline; scored tokens = the response and EOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mosaic.errors import MosaicError

_SENTINEL = "\u2063MOSAIC_SENTINEL\u2063"


@dataclass(frozen=True)
class PromptFormat:
    kind: str  # "chat_template" or "plain"
    end_token_id: int

    def prompt_text(self, tokenizer: Any, prompt: str) -> str:
        if self.kind == "plain":
            return prompt + "\n"
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)

    def prompt_ids(self, tokenizer: Any, prompt: str) -> list[int]:
        # the template text already holds any BOS it wants; plain text gets the tokenizer's own
        return tokenizer(self.prompt_text(tokenizer, prompt), add_special_tokens=self.kind == "plain")["input_ids"]

    def response_ids(self, tokenizer: Any, prompt: str, response: str, head: list[int] | None = None) -> list[int]:
        """Scored (evaluation) and target (training) tokens of `response` after `prompt`, then the
        end-of-turn token; training and evaluation both call this, so both see the same tokens.
        `head` = `prompt_ids(tokenizer, prompt)` when the caller already has it.

        The response is tokenised in context (prompt text + response, so no spurious prefix space)
        and the prompt's tokens are cut off. When that changes the prompt's own tokens (BPE merges
        across the boundary: SmolLM2's prompt ends in "assistant\n", which merges with a response
        starting with "\n\n" or two spaces), the response is tokenised on its own instead
        (`tokenizer(response, add_special_tokens=False)`), so the sequence is always exactly the
        unchanged prompt ids + the response's tokens + the end token."""
        head = self.prompt_ids(tokenizer, prompt) if head is None else head
        text = self.prompt_text(tokenizer, prompt) + response
        full = tokenizer(text, add_special_tokens=self.kind == "plain")["input_ids"]
        if full[: len(head)] == head:
            body = full[len(head):]
        else:
            body = tokenizer(response, add_special_tokens=False)["input_ids"]
        return list(body) + [self.end_token_id]


def detect_format(tokenizer: Any) -> PromptFormat:
    """Chat template when the tokenizer has one (end-of-turn token read off the template), else plain."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _SENTINEL}], tokenize=False)
        suffix = text.split(_SENTINEL, 1)[1]
        ids = tokenizer(suffix.lstrip(" "), add_special_tokens=False)["input_ids"] if suffix.strip() else []
        if ids:
            return PromptFormat("chat_template", ids[0])
        if tokenizer.eos_token_id is not None:
            return PromptFormat("chat_template", tokenizer.eos_token_id)
    if tokenizer.eos_token_id is None:
        raise MosaicError("the tokenizer has neither a chat template nor an EOS token: cannot mark response ends")
    return PromptFormat("plain", tokenizer.eos_token_id)
