"""Chat completion with vlrl's own rollout backend: chat messages + images in, completions out.

`vlrl serve` (HTTP) and the pipeline's in-process `LocalTeacher` both answer through :class:`ChatEngine`, so a
served checkpoint answers exactly as training's rollout would on the same prompt: the same `PromptEncoder`
(chat template, images resized with qwen-vl-utils semantics) and the same `generate`. One request is one
prompt; its ``n`` choices are the rollout's group of G samples sharing one prefill.

Stop strings end generation early through the rollout's own `RolloutConfig.stop` (which keeps the stop
string, as training does); the reply then follows OpenAI's convention: the text is cut before the first stop
string, and the completion's token count is the shortest prefix of the generated tokens whose text already
contains it.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from vlrl.config import ModelConfig, RolloutConfig
from vlrl.data.prompts import PromptEncoder, default_max_prompt_tokens
from vlrl.data.schema import Row
from vlrl.models.policy import Policy, load_policy
from vlrl.rollout import generate


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one request's completions (the OpenAI parameters `vlrl serve` accepts)."""

    max_tokens: int = 256  # new tokens per completion (after capping by the engine's limit and context)
    temperature: float = 0.0  # 0 = greedy (argmax)
    top_p: float = 1.0
    n: int = 1  # completions for the prompt (a rollout group)
    stop: tuple[str, ...] = ()  # the text is cut before the first of these
    seed: int | None = None  # same seed, same request -> same completions; None draws a fresh seed


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (end of turn or a stop string) or "length" (cut at max_tokens)
    completion_tokens: int


@dataclass
class ChatResult:
    completions: list[Completion]  # [n]
    prompt_tokens: int  # text + image placeholder tokens of the prompt


class PromptTooLong(ValueError):
    """The prompt is over the engine's prompt-token limit, or fills the model's context."""


# Refusing by size before tokenising: no tokenizer turns more than this many characters into one token in
# ordinary text (English averages about 4 per token), so a text longer than limit * MAX_CHARS_PER_TOKEN is over
# the limit whatever it says, and a 30 MB prompt is refused in microseconds instead of tokenised for minutes.
MAX_CHARS_PER_TOKEN = 32


class ChatEngine:
    """A policy answering chat requests one at a time (a lock serialises callers from several threads)."""

    def __init__(self, policy: Policy, min_pixels: int, max_pixels: int, max_new_tokens: int = 1024,
                 backend: str = "cached", max_prompt_tokens: int | None = None):
        self.policy = policy
        self.encoder = PromptEncoder.for_policy(policy, min_pixels, max_pixels)
        self.max_new_tokens = max_new_tokens
        self.backend = "reference" if policy.generic else backend  # the generic tier's one backend
        self.context = int(getattr(policy.core.config.get_text_config(), "max_position_embeddings", 0) or 0)
        # The training default (data.max_prompt_tokens): what the context leaves for max_new_tokens, capped.
        self.max_prompt_tokens = max_prompt_tokens or default_max_prompt_tokens(self.context, max_new_tokens)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", dtype: str = "auto", max_new_tokens: int = 1024,
             min_pixels: int | None = None, max_pixels: int | None = None,
             max_prompt_tokens: int | None = None) -> ChatEngine:
        """Load a checkpoint; "auto" picks CUDA + bfloat16 where a GPU exists, else CPU + float32. Image bounds
        default to the checkpoint's processor settings (what the model was trained with)."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if str(device).startswith("cuda") else "float32"
        policy = load_policy(ModelConfig(path=str(path), dtype=dtype), path, device=device)
        policy.model.requires_grad_(False)
        lo, hi = processor_pixel_bounds(policy.processor)
        return cls(policy, min_pixels or lo, max_pixels or hi, max_new_tokens=max_new_tokens,
                   max_prompt_tokens=max_prompt_tokens)

    def complete(self, messages: list[dict], images: Sequence[Image.Image], params: SamplingParams) -> ChatResult:
        """Answer one chat. ``messages``: OpenAI-style, content a string or a list of ``{"type": "text", "text"}``
        and ``{"type": "image"}`` parts; ``images`` fill the image parts in order."""
        n_parts = sum(1 for m in messages if not isinstance(m["content"], str)
                      for p in m["content"] if p.get("type") == "image")
        if n_parts != len(images):
            raise ValueError(f"{n_parts} image parts in the messages but {len(images)} images")
        chars = sum(len(m["content"]) if isinstance(m["content"], str) else
                    sum(len(p.get("text", "")) for p in m["content"] if p.get("type") == "text") for m in messages)
        if chars > self.max_prompt_tokens * MAX_CHARS_PER_TOKEN:
            raise PromptTooLong(f"the prompt's text is {chars} characters, far over this server's limit of "
                                f"{self.max_prompt_tokens} prompt tokens (--max-prompt-tokens)")
        # One caller at a time, encoding included: a fast tokenizer is not safe to share between threads.
        with self._lock:
            return self._complete(messages, images, params)

    def _complete(self, messages: list[dict], images: Sequence[Image.Image], params: SamplingParams) -> ChatResult:
        row = Row(id="chat", images=tuple(images), problem=_last_user_text(messages), answer="", task="chat",
                  data_source="chat", reward=None, reasoning=None, meta={})
        tokens = self.encoder.chat_lengths([messages], [[im.size for im in images]])[0]
        if tokens > self.max_prompt_tokens:  # counted without the image processor: refused before any real work
            raise PromptTooLong(f"the prompt is {tokens} tokens, over this server's limit of {self.max_prompt_tokens} "
                                "prompt tokens (--max-prompt-tokens)")
        batch = self.encoder.encode_chats([row], [messages], [list(images)], group_size=params.n)
        prompt_tokens = int(batch.attention_mask.sum())
        max_tokens = min(params.max_tokens, self.max_new_tokens)
        if self.context:
            if prompt_tokens >= self.context:
                raise PromptTooLong(f"the prompt is {prompt_tokens} tokens; the model's context is {self.context}")
            max_tokens = min(max_tokens, self.context - prompt_tokens)
        cfg = RolloutConfig(backend=self.backend, group_size=params.n, max_new_tokens=max(1, max_tokens),
                            temperature=params.temperature, top_p=params.top_p, stop=list(params.stop))
        generator = torch.Generator(self.policy.device)
        generator.manual_seed(params.seed if params.seed is not None else secrets.randbits(63))
        rollouts = generate(self.policy, batch, cfg, generator=generator, greedy=params.temperature <= 0)
        completions = []
        for i in range(params.n):
            ids = rollouts.completion_ids[i][rollouts.completion_mask[i].bool()].tolist()
            reason = "stop" if bool(rollouts.finished[i]) else "length"
            completions.append(self._cut_at_stop(rollouts.texts[i], ids, reason, params.stop))
        return ChatResult(completions, prompt_tokens)

    def _cut_at_stop(self, text: str, ids: list[int], reason: str, stop: Sequence[str]) -> Completion:
        """The completion with the text cut before the first stop string (then finish_reason is "stop")."""
        cuts = [text.find(s) for s in stop if s and s in text]
        if not cuts:
            return Completion(text, reason, len(ids))
        decode = lambda k: self.policy.tokenizer.decode(ids[:k], skip_special_tokens=True)  # noqa: E731
        lo, hi = 1, len(ids)  # smallest k whose decoded prefix holds a stop string (monotone in k)
        while lo < hi:
            mid = (lo + hi) // 2
            if any(s and s in decode(mid) for s in stop):
                hi = mid
            else:
                lo = mid + 1
        return Completion(text[:min(cuts)].rstrip(), "stop", lo)


def processor_pixel_bounds(processor) -> tuple[int, int]:
    """(min_pixels, max_pixels) of a Qwen2-VL-style image processor, whichever way its version stores them."""
    ip = processor.image_processor
    size = getattr(ip, "size", None) or {}
    lo = getattr(ip, "min_pixels", None) or size.get("shortest_edge") or 56 * 56
    hi = getattr(ip, "max_pixels", None) or size.get("longest_edge") or 28 * 28 * 1280
    return int(lo), int(hi)


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            content = message["content"]
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
    return ""
