"""A teacher that runs a transformers checkpoint in this process, through vlrl's policy and rollout.

It answers exactly as `vlrl serve` would on the same checkpoint (both use :class:`vlrl.chat.ChatEngine`), without
the HTTP round trip: the choice for a build on one machine with a GPU. Requests are answered one at a time;
greedy unless a request asks for a temperature (``ChatRequest.temperature`` defaults to 0). Sampling uses a fixed
seed, so even a sampled reply depends on the request alone (not on the batch it came in): a rerun repeats it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import PIL.Image

from data_pipelines.teachers.base import ChatReply, ChatRequest, answer_in_turn, image_of


class LocalTeacher:
    def __init__(self, model_path: str | Path, device: str = "auto", dtype: str = "auto",
                 max_new_tokens: int = 4096, engine=None):
        """Load ``model_path``; pass ``engine`` (a loaded :class:`vlrl.chat.ChatEngine`) to reuse one."""
        from vlrl.chat import ChatEngine

        path = Path(model_path)
        self.engine = engine or ChatEngine.load(path, device=device, dtype=dtype, max_new_tokens=max_new_tokens)
        self.identity = f"local:{path.resolve() if path.exists() else model_path}"

    def chat(self, requests: Sequence[ChatRequest], on_reply=None) -> list[ChatReply]:
        return answer_in_turn(self._ask, requests, on_reply)

    def _ask(self, request: ChatRequest, seed: int = 0) -> ChatReply:
        from vlrl.chat import SamplingParams

        try:
            messages, images = engine_messages(request.messages)
            params = SamplingParams(max_tokens=request.max_tokens, temperature=request.temperature,
                                    stop=tuple(request.stop), seed=seed)
            result = self.engine.complete(messages, images, params)
        except Exception as exc:  # a reply per request, whatever fails (bad image, prompt over the context)
            return ChatReply(None, error=f"{type(exc).__name__}: {exc}")
        completion = result.completions[0]
        usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": completion.completion_tokens}
        return ChatReply(completion.text, usage=usage, finish_reason=completion.finish_reason)


def engine_messages(messages: list[dict]) -> tuple[list[dict], list[PIL.Image.Image]]:
    """Teacher messages (image parts hold PIL images) -> template messages with bare image parts + the images."""
    out, images = [], []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            out.append({"role": message["role"], "content": content})
            continue
        parts = []
        for part in content:
            if part.get("type") == "image":
                images.append(image_of(part).convert("RGB"))
                parts.append({"type": "image"})
            elif part.get("type") == "text":
                parts.append({"type": "text", "text": part["text"]})
            else:
                raise ValueError(f"unsupported content part type {part.get('type')!r}")
        out.append({"role": message["role"], "content": parts})
    return out, images
