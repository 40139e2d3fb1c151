"""Rows -> PromptBatch: chat messages with images, resized with qwen-vl-utils semantics, through the
processor's chat template, left-padded and tokenised once per prompt (a group's G samples share it).

For a model of the generic tier (`vlrl.models.generic`) the images go to the processor as they are (its own
resizing) and each prompt is processed alone: `PromptBatch.prompt_inputs` keeps what the processor returned for
it, whatever the architecture's processor returns, for the model's own forward and `generate`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from qwen_vl_utils import smart_resize

from vlrl.data.schema import Row

IMAGE_PLACEHOLDER = "<image>"
_SPLIT = re.compile(re.escape(IMAGE_PLACEHOLDER))


@dataclass
class ImageInputs:
    """Some images of a batch: their patches, grids, placeholder-token counts and kept vision states."""

    pixel_values: torch.Tensor | None  # [patches of these images, C*T*p*p]
    image_grid_thw: torch.Tensor | None  # [images, 3]
    image_tokens: torch.Tensor | None  # [images]
    vision_states: torch.Tensor | None  # [patches of these images, C'] (PromptBatch.vision_states rows)


@dataclass
class PromptBatch:
    rows: list[Row]  # [P]
    input_ids: torch.Tensor  # [P, L] left-padded prompt tokens
    attention_mask: torch.Tensor  # [P, L]
    mm_token_type_ids: torch.Tensor  # [P, L] 0 text, 1 image
    pixel_values: torch.Tensor | None  # [num_patches, C*T*p*p], all images of the batch in order
    image_grid_thw: torch.Tensor | None  # [num_images, 3]
    image_tokens: torch.Tensor | None  # [num_images] placeholder tokens per image (patches / merge_size**2)
    images_per_prompt: list[int]  # [P]
    image_sizes: list[tuple[tuple[int, int], ...]]  # [P] original (w, h) per image
    resized_sizes: list[tuple[tuple[int, int], ...]]  # [P] model-input (w, h) per image
    group_size: int  # G: samples per prompt
    # [3, P, L] rotary positions: set by an encoder made with `PromptEncoder.for_policy` (else filled on first use
    # by Policy.prompt_positions)
    positions: torch.Tensor | None = None
    # [num_patches, C] the vision tower's output before its connector (Policy.vision_states), kept by the rollout
    # backend when the tower is frozen (rollout.reuse_vision), so rollout and update share it
    vision_states: torch.Tensor | None = None
    # [P] the generic tier's prompts: each prompt's processor outputs, alone (batch 1, unpadded); else None
    prompt_inputs: list[dict[str, torch.Tensor]] | None = None

    @property
    def num_prompts(self) -> int:
        return len(self.rows)

    def prompt_images(self, prompt: int) -> range:
        """Indices (into image_grid_thw) of prompt `prompt`'s images."""
        start = sum(self.images_per_prompt[:prompt])
        return range(start, start + self.images_per_prompt[prompt])

    def select_images(self, images: Sequence[int]) -> ImageInputs:
        """The patches, grids, token counts and (when kept) vision states of images `images`, in that order:
        image i is rows patch_start[i]:patch_start[i+1] of pixel_values (and vision_states), where an image has
        grid_thw.prod() patch rows. The one place patches are sliced by grid."""
        if self.pixel_values is None or not len(images):
            return ImageInputs(None, None, None, None)
        grid = self.image_grid_thw
        start = [0, *grid.prod(-1).cumsum(0).tolist()]
        index = torch.cat([torch.arange(start[i], start[i + 1]) for i in images]).to(grid.device)
        states = None if self.vision_states is None else self.vision_states[index]
        images_t = torch.as_tensor(list(images), device=grid.device)
        return ImageInputs(self.pixel_values[index], grid[images_t], self.image_tokens[images_t], states)

    def to(self, device) -> PromptBatch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return PromptBatch(self.rows, move(self.input_ids), move(self.attention_mask), move(self.mm_token_type_ids),
                           move(self.pixel_values), move(self.image_grid_thw), move(self.image_tokens),
                           self.images_per_prompt,
                           self.image_sizes, self.resized_sizes, self.group_size, move(self.positions),
                           move(self.vision_states),
                           None if self.prompt_inputs is None else [
                               {k: move(v) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
                               for inputs in self.prompt_inputs])


def build_messages(row: Row, system_prompt: str = "", prompt_suffix: str = "") -> list[dict]:
    """Chat messages for a row: images where `<image>` marks them, else all images before the text."""
    return chat_messages(row.problem, len(row.images), system_prompt, prompt_suffix)


def chat_messages(problem: str, num_images: int, system_prompt: str = "", prompt_suffix: str = "") -> list[dict]:
    """Chat messages for a problem with `num_images` images (see `build_messages`); needs no decoded image."""
    text = problem + (" " + prompt_suffix if prompt_suffix else "")
    pieces = _SPLIT.split(text)
    content: list[dict] = []
    if len(pieces) == 1:
        content += [{"type": "image"} for _ in range(num_images)]
        content.append({"type": "text", "text": text})
    else:
        for i, piece in enumerate(pieces):
            if piece.strip():
                content.append({"type": "text", "text": piece})
            if i < len(pieces) - 1:
                content.append({"type": "image"})
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": content}]


def resize_image(image: Image.Image, min_pixels: int, max_pixels: int, factor: int = 28) -> Image.Image:
    """Resize to the model grid like qwen-vl-utils: sides multiples of `factor`, area within the bounds."""
    h, w = smart_resize(image.height, image.width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return image if (w, h) == image.size else image.resize((w, h), Image.BICUBIC)


class PromptEncoder:
    """Turns rows into a `PromptBatch` with the policy's processor. `generic`: a model of the generic tier
    (`Policy.generic`): images are not resized here (min/max_pixels do not apply) and each prompt keeps its own
    processor outputs."""

    def __init__(self, processor, min_pixels: int, max_pixels: int, system_prompt: str = "", prompt_suffix: str = "",
                 generic: bool = False, positions=None):
        self.processor = processor
        self.generic = generic
        # (input_ids, mm_token_type_ids, image_grid_thw, attention_mask) -> rotary positions [3, P, L]: given (the
        # policy's `rope_positions`, see `for_policy`), every batch leaves the encoder complete
        self.positions = positions
        self._image_tokens: dict[tuple[int, int], int] = {}
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        self.system_prompt, self.prompt_suffix = system_prompt, prompt_suffix
        ip = processor.image_processor
        self.merge_size = getattr(ip, "merge_size", 2)
        self.factor = getattr(ip, "patch_size", 14) * self.merge_size

    def image_tokens(self, size: tuple[int, int]) -> int:
        """Placeholder tokens of an image of original `size` (w, h): its resized area over (patch * merge)^2."""
        if self.generic:
            return self._generic_image_tokens(size)
        h, w = smart_resize(size[1], size[0], factor=self.factor, min_pixels=self.min_pixels,
                            max_pixels=self.max_pixels)
        return (h // self.factor) * (w // self.factor)

    @classmethod
    def for_policy(cls, policy, min_pixels: int, max_pixels: int, system_prompt: str = "", prompt_suffix: str = ""
                   ) -> PromptEncoder:
        """The encoder of `policy`'s prompts: its processor, its tier, and its rotary positions computed here."""
        generic = getattr(policy, "generic", False)
        return cls(policy.processor, min_pixels, max_pixels, system_prompt, prompt_suffix, generic=generic,
                   positions=None if generic else policy.rope_positions)

    def _generic_image_tokens(self, size: tuple[int, int]) -> int:
        """Tokens that stand for an image of `size` in the generic tier, the template's one marker included: what
        the processor adds to a one-image prompt for a blank image of that size, plus one (cached per size)."""
        if size not in self._image_tokens:
            text = self.processor.apply_chat_template(chat_messages("", 1), tokenize=False, add_generation_prompt=True)
            alone = len(self.processor.tokenizer([text])["input_ids"][0])
            enc = self.processor(text=[text], images=[Image.new("RGB", tuple(size))], return_tensors="pt")
            self._image_tokens[size] = enc["input_ids"].shape[1] - alone + 1
        return self._image_tokens[size]

    def prompt_lengths(self, problems: Sequence[str], image_sizes: Sequence[Sequence[tuple[int, int]]]) -> list[int]:
        """Tokens of each row's encoded prompt (text and image placeholders; equal to its `attention_mask.sum()`),
        from the problem text and the original image sizes alone: no image is decoded or run through the image
        processor, so the start-up check of a large dataset stays cheap."""
        chats = [chat_messages(p, len(sizes), self.system_prompt, self.prompt_suffix)
                 for p, sizes in zip(problems, image_sizes, strict=True)]
        return self.chat_lengths(chats, image_sizes)

    def chat_lengths(self, chats: Sequence[list[dict]], image_sizes: Sequence[Sequence[tuple[int, int]]],
                     batch: int = 1024) -> list[int]:
        """Prompt tokens of prepared chat messages whose image parts take images of `image_sizes` (w, h)."""
        out = []
        for start in range(0, len(chats), batch):
            texts = [self.processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
                     for m in chats[start:start + batch]]
            ids = self.processor.tokenizer(texts)["input_ids"]
            for tokens, sizes in zip(ids, image_sizes[start:start + batch], strict=True):
                # The template writes one placeholder per image; the processor repeats it per image token.
                out.append(len(tokens) + sum(self.image_tokens(size) - 1 for size in sizes))
        return out

    def __call__(self, rows: Sequence[Row], group_size: int) -> PromptBatch:
        chats = [build_messages(row, self.system_prompt, self.prompt_suffix) for row in rows]
        return self.encode_chats(rows, chats, [row.images for row in rows], group_size)

    def encode_chats(self, rows: Sequence[Row], chats: Sequence[list[dict]],
                     chat_images: Sequence[Sequence[Image.Image]], group_size: int) -> PromptBatch:
        """Encode prepared chat messages (`vlrl serve` takes them from requests, not from rows): the image parts
        (``{"type": "image"}``) of ``chats[i]`` take ``chat_images[i]`` in order; ``rows[i]`` rides along."""
        if self.generic:
            return self._encode_generic(rows, chats, chat_images, group_size)
        texts, images, sizes, resized, counts = [], [], [], [], []
        for messages, originals in zip(chats, chat_images, strict=True):
            texts.append(self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            small = [resize_image(im, self.min_pixels, self.max_pixels, self.factor) for im in originals]
            images += small
            sizes.append(tuple(im.size for im in originals))
            resized.append(tuple(im.size for im in small))
            counts.append(len(small))
        enc = self.processor(text=texts, images=images or None, return_tensors="pt", padding=True,
                             padding_side="left")
        ids = enc["input_ids"]
        mm = enc.get("mm_token_type_ids")
        if mm is None:
            mm = (ids == self.processor.image_token_id).long()
        grid = enc.get("image_grid_thw")
        batch = PromptBatch(
            rows=list(rows), input_ids=ids, attention_mask=enc["attention_mask"], mm_token_type_ids=mm,
            pixel_values=enc.get("pixel_values"), image_grid_thw=grid,
            image_tokens=None if grid is None else grid.prod(-1) // self.merge_size**2,
            images_per_prompt=counts, image_sizes=sizes, resized_sizes=resized, group_size=group_size,
        )
        if self.positions is not None:
            batch.positions = self.positions(ids, mm, grid, batch.attention_mask)
        return batch


    def _encode_generic(self, rows, chats, chat_images, group_size: int) -> PromptBatch:
        """Each prompt through the processor alone (`PromptBatch.prompt_inputs`); input_ids and attention_mask
        also left-padded into [P, L] for what counts prompt tokens (micro-batch planning, the reward's lengths)."""
        prompt_inputs = []
        for messages, images in zip(chats, chat_images, strict=True):
            text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            enc = self.processor(text=[text], images=[im.convert("RGB") for im in images] or None, return_tensors="pt")
            prompt_inputs.append({k: v for k, v in enc.items() if v is not None})
        L = max(inputs["input_ids"].shape[1] for inputs in prompt_inputs)
        pad = self.processor.tokenizer.pad_token_id or 0
        ids = torch.full((len(prompt_inputs), L), pad, dtype=torch.long)
        attn = torch.zeros(len(prompt_inputs), L, dtype=torch.long)
        for p, inputs in enumerate(prompt_inputs):
            n = inputs["input_ids"].shape[1]
            ids[p, L - n:] = inputs["input_ids"][0]
            attn[p, L - n:] = 1
        sizes = [tuple(im.size for im in images) for images in chat_images]
        return PromptBatch(
            rows=list(rows), input_ids=ids, attention_mask=attn, mm_token_type_ids=torch.zeros_like(ids),
            pixel_values=None, image_grid_thw=None, image_tokens=None,
            images_per_prompt=[len(images) for images in chat_images], image_sizes=sizes, resized_sizes=sizes,
            group_size=group_size, prompt_inputs=prompt_inputs,
        )


# The default cap on prompt tokens. A model's context (128k for Qwen2.5-VL) is far beyond what an RL step can
# afford: every prompt is run G times in the update, so a prompt of tens of thousands of tokens costs minutes and
# tens of GB per step. 8,192 holds any ordinary visual question — the text plus several images at the largest
# default resolution (1,280 tokens each at max_pixels = 1280 * 28 * 28) — while such outliers are dropped.
PROMPT_TOKENS_CAP = 8192


def default_max_prompt_tokens(context: int | None, max_new_tokens: int) -> int:
    """The prompt-token limit when none is configured: what the context leaves for `max_new_tokens`, at most
    `PROMPT_TOKENS_CAP` (the context alone when the model does not state it)."""
    if not context:
        return PROMPT_TOKENS_CAP
    return max(1, min(context - max_new_tokens, PROMPT_TOKENS_CAP))
