"""The Qwen VL families vlrl builds offline, one :class:`Family` record per transformers ``model_type``.

All three share one layout — a ViT over (temporal 2 x patch x patch) pixel cubes, a 2x2 patch merger into the
language model's width, image placeholder tokens, 3-D (temporal, height, width) rotary positions — and differ in:

==============  =========  ==========  ===========================================================================
model_type      patch      mean / std  vision tower and positions
==============  =========  ==========  ===========================================================================
qwen2_vl        14         CLIP        ``embed_dim`` wide, MLP ``mlp_ratio`` x; merger output is ``hidden_size``
qwen2_5_vl      14         CLIP        windowed attention except ``fullatt_block_indexes``; ``out_hidden_size``
qwen3_vl        16         0.5 / 0.5   learned position grid, ``deepstack_visual_indexes``; interleaved mRoPE
==============  =========  ==========  ===========================================================================

Builders take ``text`` and ``vision`` dicts whose keys are the transformers config fields of that family (plus
``rope_theta`` and ``tie_word_embeddings`` in ``text``); the special token ids come from the tokenizer, the
mRoPE sections from the head dimension. transformers is imported only when a builder runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

# OpenAI CLIP's normalisation, the default of transformers' Qwen2VLImageProcessor (OPENAI_CLIP_MEAN/STD) and
# what the released Qwen2-VL and Qwen2.5-VL preprocessor_config.json files use.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Qwen3-VL normalises to [-1, 1]: its released preprocessor_config.json files have image_mean = image_std =
# [0.5, 0.5, 0.5], and transformers' Qwen3VLVideoProcessor defaults to the same (IMAGENET_STANDARD_MEAN/STD).
# transformers has no Qwen3-VL image processor of its own (AutoImageProcessor maps qwen3_vl to
# Qwen2VLImageProcessor, whose defaults are CLIP's), so the builder must set these explicitly.
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)

# Names the tiny and the released tokenizers share (Qwen's special tokens).
PAD_TOKEN = "<|endoftext|>"  # also bos, as in Qwen2.5 and Qwen3
EOS_TOKEN = "<|im_end|>"  # end of turn
IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"
VISION_START_TOKEN = "<|vision_start|>"
VISION_END_TOKEN = "<|vision_end|>"

# Keys of the `text` dict that are not text-config fields: the builder places them.
TEXT_EXTRAS = ("rope_theta", "tie_word_embeddings")
# Fields a builder sets itself and an override may not.
_BUILDER_SET = {"rope_parameters", "bos_token_id", "eos_token_id", "pad_token_id", "patch_size",
                "spatial_merge_size", "temporal_patch_size"}


class FamilyError(ValueError):
    """A config or shape that does not fit its family; the message names the family and the field."""


def mrope_sections(head_dim: int, interleaved: bool = False) -> list[int]:
    """(temporal, height, width) sections of the rotary half-dimension, summing to ``head_dim // 2``.

    Contiguous (Qwen2/2.5-VL): 1/4 temporal, 3/8 each spatial, [16, 24, 24] at head_dim 128. Interleaved
    (Qwen3-VL, frequencies dealt t, h, w, t, h, w, ...): 5/16 each spatial, the rest temporal, [24, 20, 20].

    >>> mrope_sections(128), mrope_sections(128, interleaved=True), mrope_sections(16)
    ([16, 24, 24], [24, 20, 20], [2, 3, 3])
    """
    if head_dim % 2 or head_dim < 8:
        raise FamilyError(f"head_dim {head_dim}: mRoPE needs an even head dimension of at least 8")
    half = head_dim // 2
    spatial = 5 * half // 16 if interleaved else 3 * half // 8
    return [half - 2 * spatial, spatial, spatial]


def _text_head_dim(text: dict) -> int:
    return text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]


def _token_ids(tokenizer) -> dict:
    ids = tokenizer.convert_tokens_to_ids
    return dict(image_token_id=ids(IMAGE_TOKEN), video_token_id=ids(VIDEO_TOKEN),
                vision_start_token_id=ids(VISION_START_TOKEN), vision_end_token_id=ids(VISION_END_TOKEN))


def _text_config(tokenizer, text: dict, rope: dict, max_positions: int) -> dict:
    ids = tokenizer.convert_tokens_to_ids
    defaults = dict(max_position_embeddings=max_positions, rope_parameters=rope, bos_token_id=ids(PAD_TOKEN),
                    eos_token_id=ids(EOS_TOKEN), pad_token_id=ids(PAD_TOKEN))
    return defaults | {k: v for k, v in text.items() if k not in TEXT_EXTRAS}


def _qwen2_config(config_class: str, tokenizer, text: dict, vision: dict, patch: int):
    """Qwen2-VL and Qwen2.5-VL: contiguous mRoPE sections, theta 1e6, 32k positions."""
    import transformers

    if "head_dim" in text:
        raise FamilyError(f"{config_class}: the text head dimension is hidden_size / num_attention_heads; "
                          "drop text.head_dim")
    if text["hidden_size"] % text["num_attention_heads"]:
        raise FamilyError(f"{config_class}: text hidden_size {text['hidden_size']} is not a multiple of "
                          f"num_attention_heads {text['num_attention_heads']}")
    sections = mrope_sections(_text_head_dim(text))
    rope = {"rope_type": "default", "rope_theta": text.get("rope_theta", 1_000_000.0), "mrope_section": sections}
    return getattr(transformers, config_class)(
        text_config=_text_config(tokenizer, text, rope, max_positions=32768),
        vision_config=dict(patch_size=patch, spatial_merge_size=2, temporal_patch_size=2, **vision),
        **_token_ids(tokenizer),
        tie_word_embeddings=text.get("tie_word_embeddings", False),
    )


def _qwen3_config(config_class: str, tokenizer, text: dict, vision: dict, patch: int):
    """Qwen3-VL: interleaved mRoPE (transformers 5 reads ``mrope_interleaved`` and ``mrope_section`` from
    ``rope_parameters``, as the released config.json files' ``rope_scaling`` hold them), theta 5e6, an explicit
    head_dim (4B's is 128 though 2560 / 32 = 80), 256k positions."""
    import transformers

    text = dict(text, head_dim=_text_head_dim(text))
    rope = {"rope_type": "default", "rope_theta": text.get("rope_theta", 5_000_000.0),
            "mrope_section": mrope_sections(text["head_dim"], interleaved=True), "mrope_interleaved": True}
    return getattr(transformers, config_class)(
        text_config=_text_config(tokenizer, text, rope, max_positions=262144),
        vision_config=dict(patch_size=patch, spatial_merge_size=2, temporal_patch_size=2, **vision),
        **_token_ids(tokenizer),
        tie_word_embeddings=text.get("tie_word_embeddings", False),
    )


@dataclass(frozen=True)
class Family:
    """What vlrl needs to know to build (and to recognise) one Qwen VL family. Class names are those of
    transformers, looked up when used."""

    model_type: str
    model_class: str
    processor_class: str
    config_class: str
    image_processor_class: str
    video_processor_class: str
    patch_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    vision_out_field: str  # the vision field that must equal the language model's hidden_size
    _config: Callable = dataclasses.field(repr=False)
    merge_size: int = 2
    temporal_patch_size: int = 2

    @property
    def factor(self) -> int:
        """Pixels per side of one merged image token (28 for patch 14, 32 for patch 16)."""
        return self.patch_size * self.merge_size

    def config(self, tokenizer, text: dict, vision: dict):
        """A transformers config of this family with `tokenizer`'s special token ids; checked by :meth:`check`."""
        config = self._config(self.config_class, tokenizer, text, vision, self.patch_size)
        self.check(config)
        return config

    def model(self, config):
        """A randomly initialised model of this family (the current torch seed and default device)."""
        import transformers

        return getattr(transformers, self.model_class)(config)

    def processor(self, tokenizer, min_pixels: int, max_pixels: int):
        """This family's processor (image + video processor, `tokenizer`, its chat template); images are
        resized to between `min_pixels` and `max_pixels`, multiples of :attr:`factor` a side."""
        import transformers

        common = dict(size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, patch_size=self.patch_size,
                      merge_size=self.merge_size, temporal_patch_size=self.temporal_patch_size)
        if self.image_mean != CLIP_MEAN:  # CLIP's is the default; the Qwen2.5 processor files stay as they were
            common.update(image_mean=list(self.image_mean), image_std=list(self.image_std))
        return getattr(transformers, self.processor_class)(
            image_processor=getattr(transformers, self.image_processor_class)(**common),
            tokenizer=tokenizer,
            video_processor=getattr(transformers, self.video_processor_class)(**common),
            chat_template=tokenizer.chat_template,
        )

    def fields(self, section: str) -> list[str]:
        """The keys a `section` ('text' or 'vision') dict of this family may hold, sorted."""
        import transformers

        config_class = getattr(transformers, self.config_class)
        sub = config_class.sub_configs[f"{section}_config"]
        base = {f.name for f in dataclasses.fields(transformers.PreTrainedConfig)}
        names = {f.name for f in dataclasses.fields(sub)} - base - _BUILDER_SET
        if section == "text":
            names |= set(TEXT_EXTRAS)
            if self.model_type != "qwen3_vl":
                names.discard("head_dim")
        return sorted(names)

    def check(self, config) -> None:
        """Raise :class:`FamilyError` when `config` (a transformers config) cannot be a model of this family."""
        problems = list(self._problems(config))
        if problems:
            raise FamilyError(f"not a valid {self.model_type} config: " + "; ".join(problems))

    def _problems(self, config):
        if config.model_type != self.model_type:
            yield f"model_type is {config.model_type!r}"
            return
        t, v = config.text_config, config.vision_config
        for name, want in (("patch_size", self.patch_size), ("spatial_merge_size", self.merge_size),
                           ("temporal_patch_size", self.temporal_patch_size)):
            if getattr(v, name) != want:
                yield f"vision {name} is {getattr(v, name)}, the family's is {want}"
        if getattr(v, self.vision_out_field) != t.hidden_size:
            yield (f"vision {self.vision_out_field} {getattr(v, self.vision_out_field)} must equal text hidden_size "
                   f"{t.hidden_size} (the merger feeds the language model)")
        width = v.embed_dim if self.model_type == "qwen2_vl" else v.hidden_size
        if width % v.num_heads:
            yield f"vision width {width} is not a multiple of num_heads {v.num_heads}"
        if t.num_attention_heads % t.num_key_value_heads:
            yield (f"text num_attention_heads {t.num_attention_heads} is not a multiple of num_key_value_heads "
                   f"{t.num_key_value_heads}")
        head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
        if self.model_type != "qwen3_vl" and t.hidden_size % t.num_attention_heads:
            yield f"text hidden_size {t.hidden_size} is not a multiple of num_attention_heads {t.num_attention_heads}"
        sections = t.rope_parameters.get("mrope_section")
        if sections is None or len(sections) != 3 or sum(sections) != head_dim // 2:
            yield f"rope_parameters mrope_section {sections} must be 3 sections summing to head_dim/2 = {head_dim // 2}"
        if self.model_type == "qwen2_5_vl":
            if any(not 0 <= i < v.depth for i in v.fullatt_block_indexes):
                yield f"vision fullatt_block_indexes {v.fullatt_block_indexes} outside depth {v.depth}"
            if v.window_size % self.factor:
                yield f"vision window_size {v.window_size} is not a multiple of {self.factor} pixels"
        if self.model_type == "qwen3_vl":
            if not t.rope_parameters.get("mrope_interleaved"):
                yield "rope_parameters must have mrope_interleaved: true"
            indexes = list(v.deepstack_visual_indexes)
            if any(not 0 <= i < v.depth for i in indexes):
                yield f"vision deepstack_visual_indexes {indexes} outside depth {v.depth}"
            if len(indexes) > t.num_hidden_layers:
                yield (f"{len(indexes)} deepstack_visual_indexes but only {t.num_hidden_layers} text layers to add "
                       "them to")
            side = round(v.num_position_embeddings ** 0.5)
            if side * side != v.num_position_embeddings:
                yield f"vision num_position_embeddings {v.num_position_embeddings} is not a square grid"


FAMILIES: dict[str, Family] = {
    f.model_type: f for f in (
        Family("qwen2_vl", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", "Qwen2VLConfig",
               "Qwen2VLImageProcessor", "Qwen2VLVideoProcessor", patch_size=14, image_mean=CLIP_MEAN,
               image_std=CLIP_STD, vision_out_field="hidden_size", _config=_qwen2_config),
        Family("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor", "Qwen2_5_VLConfig",
               "Qwen2VLImageProcessor", "Qwen2VLVideoProcessor", patch_size=14, image_mean=CLIP_MEAN,
               image_std=CLIP_STD, vision_out_field="out_hidden_size", _config=_qwen2_config),
        Family("qwen3_vl", "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor", "Qwen3VLConfig",
               "Qwen2VLImageProcessor", "Qwen3VLVideoProcessor", patch_size=16, image_mean=HALF_MEAN,
               image_std=HALF_STD, vision_out_field="out_hidden_size", _config=_qwen3_config),
    )
}


def get_family(model_type: str) -> Family:
    """The :class:`Family` of `model_type`; a :class:`FamilyError` naming the known ones otherwise."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise FamilyError(f"unknown model family {model_type!r}; known: {', '.join(FAMILIES)}") from None
