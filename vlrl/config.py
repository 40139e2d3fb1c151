"""The configuration schema: typed dataclasses, one per stage of the data flow.

Every field carries its help text (shown by ``vlrl train --help``). The defaults *are* the tiny CPU demo
that ``vlrl train`` runs with no argument; ``configs/*.yaml`` override them and ``key.sub=value`` on the
command line overrides the YAML. Loading, overriding and saving live in ``vlrl.config_loader``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


def option(default: Any, help: str) -> Any:
    """A dataclass field with a help string; mutable defaults are copied per instance."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: _deepcopy(d), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def _deepcopy(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)


@dataclass
class ModelConfig:
    path: str = option(
        "tiny",
        "HF-format checkpoint directory or hub id (a hub id is downloaded only when named): Qwen2-VL, Qwen2.5-VL, "
        "Qwen3-VL and Qwen3-VL-MoE run in vlrl's fast path, any other image-text-to-text model in the generic "
        "tier (README, Model families); 'tiny' builds a tiny random Qwen2.5-VL offline into <output_dir>/tiny_model, its word vocabulary taken from the data (the problems "
        "and answers of the train and eval splits, data.system_prompt and data.prompt_suffix).",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = option("float32", "Parameter dtype: float32, bfloat16 or float16.")
    attn_implementation: str = option("sdpa", "Attention kernel passed to transformers: sdpa, eager, flash_attention_2.")
    freeze_vision: bool = option(False, "Freeze the vision tower (the merger/connector stays trainable).")
    freeze_merger: bool = option(
        False, "Freeze the merger (the connector from vision features to the language model); with LoRA it "
        "otherwise trains as a full copy beside the adapters.",
    )
    lora_rank: int = option(
        0, "LoRA rank (peft); 0 trains the weights themselves. With LoRA every base weight is frozen: only the "
        "adapters (and the merger, unless model.freeze_merger) train, and the KL reference is the same model with "
        "its adapters switched off (no second copy).",
    )
    lora_alpha: float = option(32.0, "LoRA scale numerator: the adapter's update is scaled by lora_alpha / lora_rank.")
    lora_dropout: float = option(
        0.0, "Dropout on the LoRA input; keep 0 for RL: dropout makes the update's log-probs differ from the "
        "rollout's, so on-policy importance ratios are no longer 1.",
    )
    lora_target_modules: list[str] = option(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "Projections of the language model's layers that get adapters (attention and MLP by default).",
    )
    lora_vision: bool = option(
        False, "Also put adapters on the vision tower's blocks (attention qkv/proj and MLP projections).",
    )
    gradient_checkpointing: bool = option(False, "Recompute activations in the backward pass to save memory.")
    min_pixels: int = option(56 * 56, "Smallest image area (pixels) after resizing, qwen-vl-utils semantics.")
    max_pixels: int = option(112 * 112, "Largest image area (pixels) after resizing, qwen-vl-utils semantics.")


@dataclass
class DataConfig:
    path: str = option(
        "synthetic",
        "Dataset: a directory written by datasets.save_to_disk, a parquet file or directory of parquet "
        "files; 'synthetic' generates the shapes task into <output_dir>/data.",
    )
    train_split: str = option("train", "Split used for training.")
    eval_split: str = option("test", "Held-out split used for greedy evaluation ('' disables eval).")
    prompts_per_step: int = option(
        32, "Prompts per optimisation step (P), over all processes; each is sampled group_size times. With N "
        "processes each takes P / N whole prompts, so P must be a multiple of N.",
    )
    source_weights: dict = option(
        {"shapes_colour": 3}, "Sampling weight per data_source ({source: weight}; unnamed sources weigh 1); empty reads the "
        "data in shuffled epochs. Weights naming no source of the data (the default is the tiny demo's) are ignored "
        "with a warning; naming some present and some absent sources is an error.",
    )
    system_prompt: str = option("", "Optional system message prepended to every prompt.")
    prompt_suffix: str = option("", "Text appended to every problem (e.g. an instruction about answer tags).")
    unknown_tokens: Literal["error", "drop", "ignore"] = option(
        "error", "Rows whose problem or answer the model's tokenizer encodes as its unknown token (a word-level "
        "vocabulary that lacks their words; byte-level tokenizers have none): 'error' stops before training and "
        "names them, 'drop' trains without them (logged), 'ignore' trains on them as they are.",
    )
    max_eval_rows: int = option(256, "At most this many held-out rows are evaluated.")
    max_prompt_tokens: int | None = option(
        None, "Longest prompt in tokens (text and image placeholders, as encoded for the model); longer rows are "
        "dropped at start-up, counted and listed in RUN_DIR/dropped_rows.jsonl, never truncated (a cut prompt "
        "loses image tokens). null: the model's context minus rollout.max_new_tokens, at most 8192 (every prompt "
        "runs group_size times per step, so a rare very long one costs more than it teaches).",
    )
    synthetic_train_rows: int = option(4000, "Rows per task in the generated synthetic training split.")
    synthetic_eval_rows: int = option(128, "Rows per task in the generated synthetic held-out split.")


@dataclass
class RolloutConfig:
    backend: Literal["cached", "engine", "reference"] = option(
        "cached", "Rollout backend: 'cached' (prefill once, share the KV cache across the group), 'engine' (the "
        "same, decoding into a preallocated static KV cache, finished rows compacted away, CUDA graphs on GPU) or "
        "'reference' (transformers generate on repeated prompts; slow, for correctness checks).",
    )
    group_size: int = option(16, "Completions sampled per prompt (G).")
    max_new_tokens: int = option(4, "Maximum completion length in tokens.")
    min_new_tokens: int = option(
        0, "Minimum completion length in tokens: before it, EOS (every id of the model's eos_token_ids) cannot be "
        "sampled and stop strings do not end a completion (one written earlier ends it at this length). Every "
        "backend applies it (the reference and generic tier through transformers' generate(min_new_tokens=...)). "
        "Must be <= max_new_tokens; 0: no minimum.",
    )
    temperature: float = option(1.0, "Sampling temperature (log-probs in the update use the same).")
    top_p: float = option(1.0, "Nucleus sampling mass; 1.0 disables.")
    top_k: int = option(0, "Sample among the k most likely tokens; 0 disables.")
    stop: list[str] = option(
        [], "Stop strings: a completion ends at the token whose addition makes its decoded text contain one "
        "(that token is kept, the text is cut right after the stop string). Every backend applies them.",
    )
    cuda_graphs: bool = option(
        True, "'engine' backend on CUDA: capture the decode step in a CUDA graph per batch-size bucket and replay "
        "it. Ignored on CPU, where the same step runs eagerly.",
    )
    reuse_vision: bool = option(
        True, "When the vision tower is frozen (model.freeze_vision, no LoRA on it), encode each step's images "
        "once: the rollout keeps the tower's output and the update runs only the merger on it (exact).",
    )


@dataclass
class RewardTerm:
    name: str = option("accuracy", "Registered reward name, or 'module:function' / 'file.py:function'.")
    weight: float = option(1.0, "Weight of this term in the total.")
    params: dict = option({}, "Keyword parameters passed to the reward function.")


@dataclass
class RewardConfig:
    terms: list = option(
        [{"name": "accuracy", "weight": 1.0, "params": {"single": True}},
         {"name": "format", "weight": 0.5, "params": {"partial_credit": True}}],
        "Default reward terms (list of {name, weight, params}) for rows whose task has no entry in per_task.",
    )
    per_task: dict = option({}, "Reward terms per task name; replaces `terms` for rows of that task.")
    normalize_weights: bool = option(
        False, "Divide each row's total by the sum of its applied positive weights (so it stays <= 1).",
    )
    workers: int = option(
        2, "Processes that score rewards, so one slow verifier call cannot stall training; 0 scores in the "
        "trainer's process (soft timeout only, in the main thread).",
    )
    timeout_s: float = option(
        5.0, "Time limit per reward call in seconds; a call over it scores 0 and counts in reward/timeouts. "
        "0 disables the limit.",
    )
    accuracy_term: str = option(
        "accuracy", "The component evaluations report as accuracy (eval/accuracy, and pass@k / mean@k of `vlrl "
        "eval`): a term's component key, e.g. judge or iou for a mix whose correctness is scored that way. A row "
        "the term does not apply to counts 0; a mix without the term reports its total instead.",
    )


@dataclass
class AlgorithmConfig:
    advantage: Literal["group", "rloo", "batch", "grpo", "drgrpo"] = option(
        "group", "Advantage baseline, subtracted from each reward: group (the mean of the prompt's group, GRPO), rloo "
        "(the mean of the group's other completions, leave-one-out) or batch (the mean reward of the step's "
        "completions of the same task, all processes: a group whose answers are all wrong still pushes its answer "
        "down). What the difference is divided by is algorithm.scale_rewards. Deprecated aliases: grpo = group with "
        "scale_rewards=group, drgrpo = group with scale_rewards=none.",
    )
    scale_rewards: Literal["group", "batch", "none"] = option(
        "none", "What the advantage (reward minus baseline) is divided by: group (the unbiased std of the prompt's G "
        "rewards + advantage_eps: GRPO), batch (the unbiased std of all the step's rewards, every process's, + "
        "advantage_eps: the same for any number of processes) or none (no division: Dr.GRPO, which finds the "
        "group std up-weights prompts that are nearly always right or always wrong).",
    )
    advantage_eps: float = option(
        1e-6, "Added to the reward std before dividing (scale_rewards=group or batch): TRL's GRPOTrainer uses 1e-4, "
        "so set 1e-4 to compare with it like for like.",
    )
    split_duplicates: bool = option(
        False, "Divide each completion's advantage by the number of identical completions in its group, so an "
        "answer's weight does not grow with how often it is sampled (softmax policy gradients grow the likeliest "
        "of equally rewarded answers fastest, and the others die out).",
    )
    negative_weight: float = option(
        1.0, "Scale of negative advantages (completions worse than their group's baseline); positive ones keep "
        "weight 1. Below 1, a wrong answer in a group that also holds right answers is pushed down less: before "
        "the policy tells the images apart, those pushes lower a rarely right answer everywhere and it stops "
        "being sampled on its own images (docs/tiny_demo_tuning.md). 1 is plain GRPO.",
    )
    clip_low: float = option(0.2, "Lower clip of the importance ratio: 1 - clip_low.")
    clip_high: float = option(0.28, "Upper clip of the importance ratio: 1 + clip_high (DAPO clip-higher).")
    ratio_level: Literal["token", "sequence"] = option("token", "Importance ratio per 'token' (GRPO/PPO) or per 'sequence' (GSPO).")
    loss_aggregation: Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"] = option(
        "token_mean", "token_mean (all tokens of the batch weigh equally, DAPO), seq_mean_token_mean "
        "(GRPO paper), seq_mean_token_sum_norm (Dr.GRPO: token sum divided by max_new_tokens).",
    )
    kl_coef: float = option(
        0.0, "Weight of the KL penalty to the reference model (the starting model, frozen, until a "
        "reference_reset_every / reference_reset_kl reset); 0 disables it.",
    )
    kl_estimator: Literal["k1", "k2", "k3"] = option("k3", "KL estimator: k1, k2 or k3.")
    reference_reset_every: int = option(
        0, "Reset the KL reference every N steps (ProRL, Liu et al. 2025, arXiv 2505.24864): after the step's "
        "update the reference's weights become the current policy's (with LoRA: the adapters and trained merger "
        "as they are now, kept as a copy of the adapter) and the optimiser state (AdamW moments and step counts) "
        "is zeroed, as a fresh optimiser's; the learning-rate schedule goes on. Checkpoints keep the reference. "
        "Needs algorithm.kl_coef > 0. Logged as algorithm/reference_reset = 1 on that step. 0: never.",
    )
    reference_reset_kl: float = option(
        0.0, "Also reset the KL reference (as reference_reset_every does) after a step whose loss/kl (the mean of "
        "kl_estimator over the step's completion tokens and updates, all processes) is above this value. 0: off.",
    )
    entropy_coef: float = option(0.04, "Entropy bonus weight (subtracted from the loss).")
    entropy_bonus: Literal["entropy", "uniform", "entropy+uniform"] = option(
        "entropy+uniform", "What entropy_coef weighs: 'entropy' (the policy's entropy per token), 'uniform' (the mean "
        "log-probability of the whole vocabulary, i.e. minus the cross-entropy from the uniform distribution: its "
        "pull on a token does not fade as the token becomes rare) or 'entropy+uniform' (their sum). loss/entropy "
        "logs the chosen term.",
    )
    updates_per_batch: int = option(4, "Optimiser passes over each rollout batch (PPO epochs).")
    micro_batch_size: int = option(512, "Sequences per forward/backward pass; gradients accumulate over them.")
    old_logprobs: Literal["recompute", "rollout"] = option(
        "recompute", "With updates_per_batch > 1, where the PPO ratio's old log-probs come from: 'recompute' (a "
        "forward pass before the first update: ratios start exactly at 1) or 'rollout' (the behaviour log-probs "
        "the rollout returned: one forward pass fewer; equal in fp32, close in bf16, where the rollout's kernels "
        "differ). With one update per batch neither is computed: the detached current log-probs are exact.",
    )
    shared_prompt: bool = option(
        True, "The update's forwards run each prompt once per micro-batch and its completions on the prompt's keys "
        "and values (vlrl.update_shared), not every row as prompt + completion: the same log-probs and gradients "
        "(to float rounding) for less compute; false runs every row whole.",
    )
    micro_batch_tokens: int = option(
        0, "Also cap each micro-batch at this many tokens (sequences x (longest prompt among them + "
        "max completion length), padding included); whole sequences only, in rollout order. 0: no token cap.",
    )
    logprob_chunk_size: int = option(1024, "Tokens per chunk when computing log-probs from hidden states.")
    dynamic_sampling: bool = option(False, "Drop groups whose rewards are all equal (DAPO dynamic sampling).")
    greedy_probe_prompts: int = option(
        0, "Log rollout/greedy_logprob_delta every step: for the step's first N prompts the greedy answer is decoded "
        "before the update, and the metric is the mean over them of its summed log-prob (at rollout.temperature) "
        "after the update minus before (vlrl.greedy_probe; the same for any number of processes). Costs a greedy "
        "decode of N prompts (up to rollout.max_new_tokens steps) and two forwards of N rows per step; 0: off.",
    )


@dataclass
class OptimConfig:
    lr: float = option(5e-4, "Peak learning rate of AdamW.")
    weight_decay: float = option(0.0, "AdamW weight decay.")
    betas: list[float] = option([0.9, 0.99], "AdamW betas.")
    eps: float = option(1e-8, "AdamW epsilon.")
    warmup_steps: int = option(0, "Linear warm-up steps.")
    schedule: Literal["constant", "cosine"] = option("cosine", "Learning-rate schedule after warm-up: constant or cosine.")
    max_grad_norm: float = option(1.0, "Gradient clipping norm; 0 disables clipping.")


@dataclass
class TrainerConfig:
    total_steps: int = option(200, "Optimisation steps to run.")
    seed: int = option(0, "Seed for data order, sampling and model construction.")
    output_dir: str = option("runs/tiny", "Run directory: config, metrics, tensorboard events, checkpoints.")
    eval_every: int = option(50, "Greedy held-out evaluation every N steps (and at the start and end); 0 disables.")
    save_every: int = option(
        100, "Checkpoint every N steps (and at the end); 0 saves only at the end. A fixed step cadence gives "
        "checkpoints at the same steps in every run, to compare; save_every_minutes covers slow runs.",
    )
    save_every_minutes: float = option(
        10.0, "Also checkpoint once this many minutes of training have passed since the last checkpoint; 0 "
        "disables. A crash then loses at most about this much work however slow a step is, while writing "
        "checkpoints (tens of GB for a 7B model with its optimizer state) stays a small share of the run time. "
        "Multi-process runs follow the main process's clock.",
    )
    keep_checkpoints: int = option(2, "Keep the newest N step checkpoints.")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "auto, cpu or cuda.")
    progress_bar: bool = option(
        True, "Show a progress bar with the step's train reward and accuracy, and a line on what the first (slowest) "
        "step does.",
    )
    save_completions: int = option(
        0, "Every N steps write each completion, its row fields and the scores it got to "
        "RUN_DIR/completions.jsonl (the input format of `vlrl rewards score`); 0 = never. In multi-process runs "
        "the main process gathers and writes every process's completions.",
    )
    log_samples_every: int = option(
        10, "Every N steps keep trainer.samples_per_source completions per data source with their images, question, "
        "answer and every reward component: in RUN_DIR/samples/ (shown by `vlrl report`) and in the trackers that "
        "show images (TensorBoard, wandb, trackio, mlflow). Multi-process runs gather every rank's candidates and "
        "keep the first of each source in prompt order. 0 = never.",
    )
    samples_per_source: int = option(2, "Rollout samples kept per data source each trainer.log_samples_every steps.")
    report_to: list[str] = option(
        ["tensorboard"], "Experiment trackers, through accelerate: tensorboard, wandb, mlflow, trackio (extras "
        "vlrl[wandb], vlrl[mlflow], vlrl[trackio]) or comet_ml, aim, clearml, dvclive, swanlab. Each gets the "
        "metrics.jsonl names, the resolved config and the samples; [] logs to metrics.jsonl only.",
    )
    project: str = option("vlrl", "Tracker project (wandb/trackio project, mlflow experiment).")
    run_name: str = option("", "Tracker run name; empty: the name of trainer.output_dir.")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


@dataclass
class SFTSection:
    target: Literal["reasoning", "answer"] = option(
        "reasoning", "What the model learns to write after each prompt: 'reasoning' (the row's reasoning chain, as "
        "the chains/ set of `vlrl data build` holds it: used as is when it holds <answer>...</answer>, else put in "
        "<think>...</think> followed by <answer>ANSWER</answer>) or 'answer' (<answer>ANSWER</answer>). Either "
        "way it ends with the end-of-turn token, so the model learns to stop, and it is written in the layout the "
        "format and accuracy rewards read.",
    )
    epochs: float = option(
        0.0, "Passes over the training split; when > 0 it sets trainer.total_steps to ceil(epochs x rows / "
        "batch_size) (the saved config.yaml holds the result). 0: trainer.total_steps.",
    )
    batch_size: int = option(8, "Rows per optimiser step, over all processes (a multiple of the process count).")
    micro_batch_size: int = option(
        0, "Rows per forward/backward; gradients accumulate over a step's micro-batches. 0: the whole batch.",
    )
    eval_data: str = option(
        "", "Dataset whose data.eval_split is evaluated (greedy accuracy and rewards, as `vlrl eval`), e.g. the RL "
        "set built with the chains; '' uses data.path. Training rows whose id is in it are left out, so a chains "
        "set that holds the RL set's held-out rows never trains on them.",
    )


@dataclass
class SFTConfig:
    """What `vlrl sft` reads: the training sections it shares with `vlrl train` (model loading, data and prompts,
    the rollout and rewards its evaluation uses, optimiser, run directory) and its own."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sft: SFTSection = field(default_factory=SFTSection)


@dataclass
class EvalConfig:
    split: str = option(
        "", "Split to evaluate; empty: data.eval_split, the held-out split training evaluates ('test' by default).",
    )
    k: int = option(
        1, "pass@k and mean@k from sampled completions (at rollout.temperature) when k > 1; greedy accuracy is "
        "always computed. 1: greedy only.",
    )
    n: int | None = option(
        None, "Samples drawn per row for pass@k (n >= k; the unbiased estimate 1 - C(n-c, k) / C(n, k) with c "
        "correct samples); null: n = k.",
    )
    pass_threshold: float = option(
        1.0, "A sample counts as correct for pass@k when its accuracy is at least this (mean@k averages the "
        "accuracies themselves, partial credit included).",
    )
    seed: int = option(0, "Sampling seed: each row's samples depend on (seed, its index in the split) only.")
    progress: float | None = option(
        None, "Training progress (0-1) the rewards' schedules see, e.g. the dynamic IoU threshold; null: the "
        "checkpoint's step / trainer.total_steps for a checkpoint of a vlrl run (as the trainer's evaluation "
        "at that step), else 1.0 (the end of the schedule).",
    )
    batch_size: int = option(64, "Completions decoded per rollout call (greedy: prompts; sampled: prompts x n).")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "auto, cpu or cuda.")


@dataclass
class EvalSettings:
    """What `vlrl eval` reads: the training sections that decide how a model is prompted, decoded and scored, and
    its own. A run's saved config.yaml sets them (its other sections are ignored)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
