"""The schema of a ``vlrl data build`` config: typed dataclasses, loaded like training configs.

A build config is a YAML file (see ``configs/data/*.yaml``); ``key.sub=value`` on the command line
overrides it, unknown keys are errors, and the resolved config is saved beside the output. Every field's
help text is shown by ``vlrl data build --help``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vlrl.config import option


@dataclass
class TeacherConfig:
    kind: str = option(
        "none",
        "Teacher backend: 'none' (an RL-only build: the caption, distill and rewrite stages do not run, nor "
        "does verify when no row has a chain, and no row is dropped for them), 'openai' (any OpenAI-compatible "
        "chat-completions server, e.g. `vlrl serve`), 'local' (a transformers checkpoint run in this process) "
        "or 'programmatic' (exact answers from the synthetic scenes in each row's meta; only for synthetic "
        "sources).",
    )
    base_url: str = option("http://127.0.0.1:8000/v1", "openai: server base URL, up to and including /v1.")
    model: str = option("", "openai: model name sent with each request; local: checkpoint path.")
    api_key_env: str = option(
        "OPENAI_API_KEY", "openai: environment variable holding the API key (unset is fine for local servers)."
    )
    max_concurrency: int = option(8, "openai: requests in flight at once.")
    retries: int = option(4, "openai: retries per request after a 429/5xx/timeout/connection error.")
    timeout_s: float = option(120.0, "openai: seconds before a request is abandoned (then retried).")
    batch_size: int = option(
        32, "Requests handed to the teacher at once (identical ones asked once); each reply is cached as it arrives.",
    )


@dataclass
class TeacherStageConfig:
    enabled: bool = option(
        True, "Run this stage when it has a teacher (teacher.kind, or this stage's teacher override, is not "
        "'none'); a disabled stage passes rows through unchanged.",
    )
    teacher: dict = option(
        {}, "Overrides of the top-level teacher for this stage only (e.g. a VLM captions, a text reasoner distills)."
    )
    prompt_file: str = option("", "Prompt template file; '' = the stage's file under data_pipelines/prompts/.")
    max_tokens: int = option(1024, "Maximum tokens per teacher reply.")
    temperature: float = option(0.0, "Teacher sampling temperature (0 = greedy).")


@dataclass
class RewriteConfig(TeacherStageConfig):
    min_similarity: float = option(
        0.6, "Drop a row when the rewrite's character similarity to the original chain falls below this "
        "(the rewrite changed more than wording).",
    )


@dataclass
class VerifyConfig:
    enabled: bool = option(
        True, "Keep only chains whose final answer the accuracy verifier accepts; skipped when no row has a chain "
        "(an RL-only build).",
    )
    min_score: float = option(
        0.5, "Accuracy score a chain must reach: vlrl.rewards' `accuracy`, routed by task as in training. "
        "Verifiers of answers are 0/1; grounding scores the IoU, detection its matched-box score, ocr the "
        "similarity, so 0.5 keeps IoU >= 0.5 boxes.",
    )
    workers: int = option(0, "Reward worker processes (0 = score in this process).")
    timeout_s: float = option(5.0, "Time limit per verifier call; a call over it counts as a failed check.")


@dataclass
class CurateConfig:
    dedupe: str = option(
        "image_problem", "Duplicate key: 'image_problem' (same pixels and same question), 'image' (same "
        "pixels, whatever the question) or 'none'.",
    )
    max_answer_chars: int = option(
        200, "Drop rows whose text answer is longer (0 = no limit); grounding/detection answers are bounded by "
        "max_boxes instead.")
    max_boxes: int = option(50, "grounding/detection: drop rows with more boxes in the answer (0 = no limit).")
    min_box_side: float = option(2.0, "grounding/detection: drop rows with a box side shorter (pixels).")
    processor: str = option(
        "", "Processor (model directory) used to count prompt tokens for the visual-token budget; '' disables "
        "the budget filter.",
    )
    max_prompt_tokens: int = option(
        0, "Drop (never truncate) rows whose prompt with its image tokens is longer; needs `processor`. 0 = off.",
    )
    min_pixels: int = option(3136, "Image resizing bounds used to count image tokens (as in training).")
    max_pixels: int = option(12845056, "Upper resizing bound used to count image tokens.")
    rl_from: str = option(
        "all", "Rows of the RL set: 'all' curated rows, or 'verified' (only rows with a verified chain).",
    )
    disjoint: bool = option(False, "Keep rows of the reasoning-chain set out of the RL set.")
    eval_fraction: float = option(
        0.05, "Share of RL rows held out as the 'test' split, drawn by image (a hash of the pixels), so every "
        "question about one image lands on the same side; rows a source marks held out (its published test "
        "split) always go to 'test'.")


@dataclass
class PassRateConfig:
    enabled: bool = option(False, "Drop RL rows the policy always or never solves (pass@k with the rollout).")
    model: str = option("", "Policy checkpoint whose pass rate is measured.")
    k: int = option(8, "Samples per row.")
    min_rate: float = option(0.0, "Drop rows with pass rate <= this (too hard); -1 keeps them.")
    max_rate: float = option(1.0, "Drop rows with pass rate >= this (too easy); 2 keeps them.")
    max_new_tokens: int = option(256, "Completion length for the pass-rate rollouts.")
    temperature: float = option(1.0, "Sampling temperature for the pass-rate rollouts.")
    batch_prompts: int = option(8, "Prompts per rollout batch.")
    box_format: str = option(
        "qwen2_5_vl", "Frame of the boxes the policy writes (as the iou/detection rewards' box_format): Qwen2.5-VL "
        "answers in pixels of its resized input.",
    )
    dtype: str = option("bfloat16", "Policy dtype for the pass-rate rollouts (float32 on CPU is exact but slow).")
    min_pixels: int = option(3136, "Image resizing bounds, as in training.")
    max_pixels: int = option(12845056, "Upper image resizing bound, as in training.")


@dataclass
class BuildConfig:
    output_dir: str = option("runs/data", "Where the datasets, stage caches and dataset card go.")
    sources: list = option(
        [{"kind": "shapes", "params": {"rows_per_task": 32}}],
        "Sources: a list of {kind, name, params}; `vlrl data sources` lists kinds and their params.",
    )
    seed: int = option(0, "Seed of the held-out split (each source takes its own `seed` param where it samples).")
    teacher: TeacherConfig = field(default_factory=lambda: TeacherConfig(), metadata={"help": "The default teacher of the caption/distill/rewrite stages; none by default (an RL-only build)."})
    caption: TeacherStageConfig = field(default_factory=lambda: TeacherStageConfig(max_tokens=512), metadata={"help": "Stage 2: caption each image."})
    distill: TeacherStageConfig = field(default_factory=lambda: TeacherStageConfig(), metadata={"help": "Stage 3: a reasoning chain from caption + question."})
    rewrite: RewriteConfig = field(default_factory=lambda: RewriteConfig(), metadata={"help": "Stage 4: rewrite chains to speak of the image."})
    verify: VerifyConfig = field(default_factory=lambda: VerifyConfig(), metadata={"help": "Stage 5: keep chains whose answer matches the truth."})
    curate: CurateConfig = field(default_factory=lambda: CurateConfig(), metadata={"help": "Stage 6: dedupe, filter, split into the RL and chain sets."})
    pass_rate: PassRateConfig = field(default_factory=lambda: PassRateConfig(), metadata={"help": "Optional difficulty filter by the policy's pass rate."})
