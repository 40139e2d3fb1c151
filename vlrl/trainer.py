"""The GRPO step loop: rollout -> score -> advantage -> update -> log -> eval -> checkpoint.

Everything device- or process-dependent goes through accelerate. Data parallelism, in four rules:

- each of the W ranks takes a contiguous slice of the step's prompts (whole groups), so group advantages
  never cross ranks, and the global batch (prompts_per_step x group_size) does not depend on W;
- a prompt's samples depend on (seed, step, its index in the step) only (`vlrl.rollout.sampling`), so W ranks
  sample exactly what one process would;
- loss denominators are global totals (`vlrl.update.LossTotals`), so the ranks' averaged gradient is the
  single-process gradient; every rank runs the same number of forwards and backwards (padded micro-batches,
  the vision tower on a blank image for text-only micro-batches);
- metrics, evaluation results and saved completions are gathered from every rank; the main process writes.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast, gather_object
from tqdm.auto import tqdm

from vlrl.algorithms import (
    advantage_setting,
    batch_baseline,
    compute_advantages,
    groups_with_signal,
    scale_advantages,
    split_duplicates,
    weight_negatives,
)
from vlrl.callbacks import as_callbacks
from vlrl.checkpoint import (
    is_sharded_checkpoint,
    load_sharded,
    load_trainer_state,
    save_checkpoint,
)
from vlrl.config import Config
from vlrl.config_loader import check_config, save_config
from vlrl.data import PromptEncoder, StepSampler
from vlrl.data.rows import RowReader
from vlrl.evaluation import encode_rows, evaluate, greedy_metrics
from vlrl.greedy_probe import finish_probe, start_probe
from vlrl.inputs import write_inputs
from vlrl.metrics import MetricsLogger, StageTimer, truncate_jsonl
from vlrl.models.check import check_model_path
from vlrl.models.generic import check_generic_config
from vlrl.models.policy import load_policy
from vlrl.perf import peak_tflops, update_flops
from vlrl.reference import make_reference
from vlrl.rewards import RewardMixer
from vlrl.rewards.mixer import Scores
from vlrl.rewards.offline import input_line, score_values
from vlrl.rollout import make_backend
from vlrl.rollout.sampling import prompt_seed
from vlrl.samples import first_per_source, pick_samples, truncate_samples, write_samples
from vlrl.scoring import reward_inputs
from vlrl.startup import (
    check_vocabulary,
    claim_run_dir,
    data_path,
    drop_long,
    load_splits,
    model_path,
    resume_checkpoint,
    tiny_words,
)
from vlrl.trackers import check_report_to, finish_trackers, log_samples, make_trackers, start_trackers
from vlrl.update import (
    CompletionForward,
    Optimisation,
    UpdateBatch,
    batch_logprobs,
    loss_totals,
    lr_factor,
    padded_micro_batches,
    update_policy,
    with_full_parameters,
)

COMPLETIONS_FILE = "completions.jsonl"  # written when trainer.save_completions > 0

log = logging.getLogger(__name__)


class Trainer:
    """GRPO-family training of a vision-language policy, as `vlrl train` runs it.

    >>> import vlrl
    >>> cfg = vlrl.load_config(overrides=["trainer.total_steps=2", "trainer.output_dir=runs/api"])
    >>> trainer = vlrl.Trainer(cfg, train_dataset=rows, rewards={"my_reward": my_reward})  # doctest: +SKIP
    >>> trainer.fit()  # doctest: +SKIP
    """

    def __init__(self, cfg: Config, resume: bool = False, overwrite: bool = False, *, model=None, processor=None,
                 train_dataset=None, eval_dataset=None, rewards=None, callbacks=None):
        """`resume`: continue the run in `trainer.output_dir` from its newest complete checkpoint. `overwrite`:
        delete the outputs of an earlier run there first. Without either, a directory that holds a run is
        refused (RunDirError), before any slow setup.

        Objects instead of paths (see `vlrl.inputs`): `model` (a loaded transformers model) with its `processor`
        replace model.path; `train_dataset` (a datasets.Dataset, DatasetDict, list of dicts or {split: ...})
        and `eval_dataset` replace data.path; both are written into the run directory first. `rewards`
        ({name: function} or a list of functions named by __name__) are the reward functions the terms of
        `cfg.reward` name (see `vlrl.rewards.mixer.RewardMixer`). `callbacks` hear every step, evaluation and
        save (`vlrl.callbacks`)."""
        self.cfg = cfg = check_config(cfg)  # as loading does: deprecated names resolved, cross-field checks
        self.callbacks = as_callbacks(callbacks)
        self.clock = time.monotonic  # when time-based checkpoints are due; tests put a fake clock here
        self.run_dir = Path(cfg.trainer.output_dir)
        cpu = cfg.trainer.device == "cpu" or (cfg.trainer.device == "auto" and not torch.cuda.is_available())
        # The schedule counts optimiser steps. By default accelerate advances a prepared scheduler once per
        # process on each step (it assumes per-process batches, so W processes see W batches per step), which
        # would run the schedule W times too fast here: the step's batch is global, split across processes.
        check_report_to(cfg.trainer.report_to)  # a missing tracker fails before any slow setup
        self.accelerator = Accelerator(cpu=cpu, step_scheduler_with_optimizer=False,
                                       log_with=make_trackers(cfg, self.run_dir, resume) or None)
        acc = self.accelerator
        per_rank = prompts_per_rank(cfg.data.prompts_per_step, acc.num_processes)  # before any slow setup
        if cfg.model.path != "tiny" and model is None:  # before building data or loading weights: a wrong path
            if check_model_path(cfg.model.path).generic:  # fails at once, and what the generic tier does not do
                check_generic_config(cfg, acc.num_processes)
        torch.manual_seed(cfg.trainer.seed)
        claim_run_dir(acc, self.run_dir, resume, overwrite)
        if model is not None or processor is not None or train_dataset is not None or eval_dataset is not None:
            self.cfg = cfg = write_inputs(cfg, self.run_dir, acc.is_main_process, resume, model, processor,
                                          train_dataset, eval_dataset)
            acc.wait_for_everyone()
            if model is not None and check_model_path(cfg.model.path).generic:
                check_generic_config(cfg, acc.num_processes)
        ckpt = resume_checkpoint(acc, self.run_dir) if resume else None
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")

        train, evals, scans = load_splits(cfg, data_path(cfg, self.run_dir, acc))
        base_path = model_path(cfg, self.run_dir, acc, lambda: tiny_words(cfg, train, evals))
        # Prompt lengths first: the scans' image sizes are indexed by the rows as loaded.
        train, evals, processor = drop_long(cfg, self.run_dir, acc, base_path, train, evals, scans)
        self.train_rows, self.eval_rows = check_vocabulary(cfg, processor.tokenizer, train, evals)
        self.train_reader = RowReader(self.train_rows)
        # Task -> index, the same on every rank (the `batch` advantage's baseline is a mean per task).
        self.task_keys = {t: i for i, t in enumerate(sorted(set(self.train_rows["task"]), key=str))}
        self.eval_reader = RowReader(self.eval_rows) if self.eval_rows is not None else None
        self.start_step = self._setup_model(base_path, ckpt)
        if ckpt is not None and acc.is_main_process:
            print(f"resuming from {ckpt} at step {self.start_step} of {cfg.trainer.total_steps}", flush=True)

        self.encode = PromptEncoder.for_policy(self.policy, cfg.model.min_pixels, cfg.model.max_pixels,
                                               cfg.data.system_prompt, cfg.data.prompt_suffix)
        self.mixer = RewardMixer(cfg.reward, rewards=rewards)
        sources = None
        if cfg.data.source_weights:  # as validate_row does, an empty data_source means the task
            sources = [s or t for s, t in zip(self.train_rows["data_source"], self.train_rows["task"], strict=True)]
        self.sampler = StepSampler(len(self.train_rows), cfg.data.prompts_per_step, cfg.trainer.seed, sources,
                                   cfg.data.source_weights)
        self.rank_slice = slice(acc.process_index * per_rank, (acc.process_index + 1) * per_rank)
        self.logger = MetricsLogger(self.run_dir, enabled=acc.is_main_process, log=acc.log)
        self.logger.truncate_after(self.start_step)
        if acc.is_main_process:
            truncate_jsonl(self.run_dir / COMPLETIONS_FILE, self.start_step)
            truncate_samples(self.run_dir, self.start_step)
        start_trackers(acc, cfg, self.run_dir, resume)  # after the trims: a tracker opens its files once they are final
        self.timer = StageTimer(torch.cuda.synchronize if acc.device.type == "cuda" else None)
        self._eval_batches = None

    # ---- setup -------------------------------------------------------------------------------------------
    def _setup_model(self, base_path, ckpt) -> int:
        """Policy, optimiser and scheduler, prepared by accelerate; the KL reference; with `ckpt`, the state it
        holds. Returns the step to start from."""
        cfg, acc = self.cfg, self.accelerator
        if acc.is_fsdp2 and cfg.model.lora_rank:
            raise ValueError("model.lora_rank with FSDP is not supported yet: use DDP (configs/accelerate/ddp.yaml); "
                             "with LoRA only the small adapter state is replicated")
        self.policy = self._load_policy(base_path, ckpt)
        if acc.is_fsdp2:
            self._fsdp_units()
        self.forward = CompletionForward(self.policy.model)
        self.rollout = make_backend(self.policy, cfg.rollout)
        params = [p for p in self.forward.parameters() if p.requires_grad]
        o = cfg.optim
        optimizer = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        self.forward, self.optimizer, self.scheduler = acc.prepare(self.forward, optimizer, scheduler)
        if acc.is_fsdp2:
            acc.unwrap_model(self.forward).reshard_after_forward = bool(acc.state.fsdp_plugin.reshard_after_forward)
        # The KL reference: the starting model (with LoRA, the policy without its adapters) until a ProRL reset.
        self.reference = make_reference(cfg.algorithm, cfg.model, self.policy, self.forward, acc, base_path, ckpt)
        if ckpt is None:
            return 0
        if is_sharded_checkpoint(ckpt):
            load_sharded(ckpt, self.forward, self.optimizer)
        return load_trainer_state(ckpt, self.optimizer, self.scheduler)

    def _fsdp_units(self) -> None:
        """Shard the family's own layers: an accelerate config names layer classes (configs/accelerate/fsdp2.yaml
        names Qwen2.5-VL's); names this model does not have are replaced by its decoder layer and vision block
        classes, so one config serves every family."""
        plugin = self.accelerator.state.fsdp_plugin
        ours = self.policy.shard_unit_classes()
        named = list(plugin.transformer_cls_names_to_wrap or [])
        if named and not set(named) <= set(ours):
            log.info("FSDP2: sharding %s (this model's layers) instead of %s from the accelerate config",
                     ", ".join(ours), ", ".join(named))
            plugin.transformer_cls_names_to_wrap = ours

    def _load_policy(self, base_path, ckpt):
        """The policy to train: the base model, or the checkpoint's weights when resuming (a LoRA checkpoint
        holds only the adapter: the base model is loaded and the adapter put on it)."""
        from vlrl.models.lora import is_adapter_checkpoint

        device = self.accelerator.device
        if ckpt is not None and is_adapter_checkpoint(ckpt):
            if not self.cfg.model.lora_rank:
                raise ValueError(f"{ckpt} holds a LoRA adapter but model.lora_rank=0")
            return load_policy(self.cfg.model, base_path, device, adapter_path=ckpt)
        if ckpt is not None and is_sharded_checkpoint(ckpt):  # weights come after `prepare`, shard by shard
            return load_policy(self.cfg.model, base_path, device)
        return load_policy(self.cfg.model, ckpt or base_path, device)

    def _lr_factor(self, step: int) -> float:
        return lr_factor(self.cfg.optim, self.cfg.trainer.total_steps, step)

    # ---- the loop ----------------------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> dict[str, float]:
        """Train to `trainer.total_steps` (or stop once step `stop_after` is done, as an interruption would);
        returns the last evaluation's metrics."""
        t = self.cfg.trainer
        show = t.progress_bar and self.accelerator.is_main_process
        bar = tqdm(range(self.start_step, t.total_steps), initial=self.start_step, total=t.total_steps,
                   disable=not show, desc="train")
        last_eval: dict[str, float] = {}
        if self.start_step == 0 and t.eval_every:
            if show and self.eval_rows is not None:
                tqdm.write(f"step 0: greedy evaluation of {len(self.eval_rows)} held-out rows before training ...")
            last_eval = self.evaluate(0)
        if show and self.start_step < t.total_steps:
            tqdm.write(self._first_step_line())
        self._last_save = self.clock()
        for step in bar:
            metrics = self.train_step(step)
            self.logger.log(step + 1, metrics)
            self._notify("on_step", step + 1, metrics)
            done = step + 1 == t.total_steps
            if t.eval_every and ((step + 1) % t.eval_every == 0 or done):
                last_eval = self.evaluate(step + 1)
            if self._save_due(step + 1, done):
                self.save(step + 1)
            # This step's own train accuracy and reward: an evaluation may be many steps old.
            shown = {"reward": metrics["reward/mean"], "acc": metrics.get("reward/accuracy")}
            bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items() if v is not None})
            if stop_after is not None and step + 1 >= stop_after:
                break
        finish_trackers(self.accelerator)
        self.mixer.close()
        return last_eval

    def _first_step_line(self) -> str:
        """What the first, slowest step does (nothing is shown until it ends)."""
        c, step = self.cfg, self.start_step + 1
        P, G = c.data.prompts_per_step, c.rollout.group_size
        return (f"step {step}/{c.trainer.total_steps}: sampling {P} prompts x {G} completions ({P * G}, up to "
                f"{c.rollout.max_new_tokens} tokens each), scoring and updating ...")

    def _advantages(self, rewards: torch.Tensor, rows, G: int) -> torch.Tensor:
        """Per-completion advantages of this rank's rewards [N]: reward minus baseline, divided as
        algorithm.scale_rewards says. A ``batch`` baseline or scale needs the whole step's rewards, so every rank
        must call it then (gathers)."""
        a, acc = self.cfg.algorithm, self.accelerator
        baseline, scale = advantage_setting(a.advantage, a.scale_rewards)
        step_rewards = acc.gather(rewards) if "batch" in (baseline, scale) else None
        if baseline == "batch":
            keys = torch.tensor([self.task_keys[r.task] for r in rows], device=rewards.device).repeat_interleave(G)
            centred = batch_baseline(rewards, keys, step_rewards, acc.gather(keys))
        else:
            centred = compute_advantages(rewards, G, baseline)
        return scale_advantages(centred, rewards, G, scale, a.advantage_eps, step_rewards)

    def _save_due(self, step: int, done: bool) -> bool:
        """Checkpoint after `step`? At the end, every `save_every` steps, and once `save_every_minutes` have
        passed since the last save. The main process's clock decides and every rank gets its answer: saving is
        a collective, so all ranks must save at the same step whatever their own clocks say."""
        t = self.cfg.trainer
        if done or (t.save_every and step % t.save_every == 0):
            return True
        if not t.save_every_minutes:
            return False
        late = self.accelerator.is_main_process and self.clock() - self._last_save >= 60 * t.save_every_minutes
        return bool(broadcast(torch.tensor([int(late)], device=self.accelerator.device)).item())

    def close(self) -> None:
        """End a multi-process run cleanly: every rank reaches here, then the process group is destroyed.
        Left to interpreter exit, gloo's threads can abort a rank ("terminate called without an active
        exception") after training has finished."""
        if self.accelerator.num_processes > 1:
            self.accelerator.wait_for_everyone()
            self.accelerator.end_training()

    def train_step(self, step: int) -> dict[str, float]:
        """One step on this rank's share of the prompts; returns metrics of the whole step (all ranks)."""
        cfg, timer, acc = self.cfg, self.timer, self.accelerator
        G = cfg.rollout.group_size
        with timer("data"):
            # A row whose image fails to decode is skipped and replaced in its position (vlrl.data.rows).
            rows, skipped = self.train_reader.step_rows(self.sampler, step,
                                                        range(self.rank_slice.start, self.rank_slice.stop))
            batch = self.encode(rows, G).to(acc.device)  # complete: positions included
            seeds = [prompt_seed(cfg.trainer.seed, step, j) for j in range(self.rank_slice.start, self.rank_slice.stop)]
        with timer("rollout"):
            rollouts = with_full_parameters(self.policy, self.forward, lambda: self._rollout(batch, seeds))
        with timer("reward"):
            scores = self.score(batch, rollouts, progress=step / cfg.trainer.total_steps, step=step)
        if cfg.trainer.log_samples_every and (step + 1) % cfg.trainer.log_samples_every == 0:
            with timer("samples"):
                self._log_samples(step + 1, batch, rollouts, scores)
        with timer("advantage"):
            rewards = scores.total.to(batch.input_ids.device)
            advantages = self._advantages(rewards, batch.rows, G)
            if cfg.algorithm.split_duplicates:
                advantages = split_duplicates(advantages, rollouts.completion_ids, rollouts.completion_mask, G)
            advantages = weight_negatives(advantages, cfg.algorithm.negative_weight)
            keep = torch.ones_like(rewards, dtype=torch.bool)
            if cfg.algorithm.dynamic_sampling:
                keep = groups_with_signal(rewards, G).repeat_interleave(G)
            rows_kept = keep.nonzero().squeeze(-1)
            kept = acc.gather(torch.tensor([len(rows_kept)], device=acc.device)).tolist()  # rows kept per rank
        temperature = cfg.rollout.temperature
        chunks = self._micro_batches(batch, rollouts, rows_kept)
        old = ref = None
        if cfg.algorithm.updates_per_batch > 1 and sum(kept):
            if cfg.algorithm.old_logprobs == "rollout":
                old = rollouts.logprobs[rows_kept]
            else:
                with timer("old_logprobs"):
                    old = batch_logprobs(self.policy, self.forward, chunks, temperature, cfg.algorithm)
        if cfg.algorithm.kl_coef and sum(kept):
            with timer("ref_logprobs"), self.reference.use() as (policy, forward):
                ref = batch_logprobs(policy, forward, chunks, temperature, cfg.algorithm)
        loss_metrics = {}
        if sum(kept):
            probe = None
            if cfg.algorithm.greedy_probe_prompts:  # before the update: the policy's own greedy answers
                with timer("greedy_probe"):
                    probe = start_probe(self.policy, self.forward, self.rollout, self.encode, acc, batch.rows,
                                        self.rank_slice.start, temperature, cfg.algorithm)
            with timer("update"):
                self.forward.train()
                totals = loss_totals(acc, rollouts.completion_mask[rows_kept], cfg.rollout.max_new_tokens)
                update = UpdateBatch(chunks, advantages[rows_kept], totals, temperature, old, ref)
                optim = Optimisation(self.optimizer, self.scheduler, cfg.optim.max_grad_norm)
                loss_metrics = update_policy(self.policy, self.forward, acc, optim, update, cfg.algorithm)
                self.rollout.sync_weights()
            if probe is not None:
                with timer("greedy_probe"):
                    loss_metrics.update(finish_probe(probe, self.policy, self.forward, acc, temperature, cfg.algorithm))
            loss_metrics.update(self._update_throughput(chunks, timer.seconds["update"]))
        else:
            self.scheduler.step()
        loss_metrics.update(self.reference.after_step(step + 1, loss_metrics.get("loss/kl"), self.optimizer))
        return {**self._gathered_metrics(scores, rollouts, keep, len(skipped)), **loss_metrics, **timer.pop(),
                "optim/lr": self.scheduler.get_last_lr()[0]}

    def _log_samples(self, step: int, batch, rollouts, scores) -> None:
        """A few of the step's completions per data source with their images (`vlrl.samples`): every rank
        offers its candidates, the main process keeps the first per source and writes them to RUN_DIR/samples/
        and the trackers. A collective: every rank calls it at the same steps."""
        per_source = self.cfg.trainer.samples_per_source
        parts = gather_object([pick_samples(step, batch, rollouts, scores, per_source)])
        if self.accelerator.is_main_process:
            samples = first_per_source(parts, per_source)
            write_samples(self.run_dir, samples)
            log_samples(self.accelerator, step, samples)

    def _rollout(self, batch, seeds):
        """Sample the step's completions (with a frozen tower the backend keeps its output on the batch for the
        update: `RolloutBackend.generate`)."""
        return self.rollout.generate(batch, seeds=seeds)

    def _update_throughput(self, chunks, seconds: float) -> dict[str, float]:
        """perf/update_tflops: model TFLOP/s of this rank's update (vlrl.perf); perf/mfu where the device's peak
        is known."""
        flops = update_flops(self.policy, chunks, self.cfg.algorithm.updates_per_batch)
        tflops = flops / max(seconds, 1e-9) / 1e12
        out = {"perf/update_tflops": tflops}
        peak = peak_tflops(self.accelerator.device)
        if peak:
            out["perf/mfu"] = tflops / peak
        return out

    def _micro_batches(self, batch, rollouts, rows_kept):
        """This rank's micro-batches, padded with fillers to the largest count of any rank (see `micro_batches`)."""
        return padded_micro_batches(self.accelerator, batch, rollouts, rows_kept, self.cfg.algorithm)

    def _gathered_metrics(self, scores, rollouts, keep: torch.Tensor, skipped: int) -> dict[str, float]:
        """Reward and rollout metrics of the whole step: every rank's scores and lengths, gathered."""
        acc = self.accelerator
        skipped = acc.gather(torch.tensor([skipped], device=acc.device)).sum().item()
        lengths = acc.gather(rollouts.lengths.float())
        finished, keep = acc.gather(rollouts.finished.float()), acc.gather(keep.float())
        return {
            **Scores.concat(gather_object([scores])).metrics("reward"),
            "rollout/length_mean": lengths.mean().item(), "rollout/length_max": lengths.max().item(),
            "rollout/truncated_frac": 1.0 - finished.mean().item(), "rollout/kept_frac": keep.mean().item(),
            "data/skipped_rows": skipped,
        }

    def score(self, batch, rollouts, progress: float, step: int | None = None):
        """Rewards of this rank's completions; with ``step`` given and ``trainer.save_completions`` due, the
        completions and their scores (of every rank, gathered) are also appended to RUN_DIR/completions.jsonl,
        so every rank must call it then."""
        inputs, specs = reward_inputs(batch, rollouts, progress, self.cfg.rollout.max_new_tokens,
                                      step=None if step is None else step + 1, seed=self.cfg.trainer.seed)
        scores = self.mixer.score(inputs, specs)
        every = self.cfg.trainer.save_completions
        # Logged under the step number metrics.jsonl gives this train step (step + 1).
        if step is not None and every and (step + 1) % every == 0:
            lines = [json.dumps({"step": step + 1, **input_line(inp, spec), "scores": score_values(scores, i)})
                     for i, (inp, spec) in enumerate(zip(inputs, specs, strict=True))]
            lines = gather_object(lines)  # rank order = the step's prompt order
            if self.accelerator.is_main_process:
                with (self.run_dir / COMPLETIONS_FILE).open("a") as f:
                    f.writelines(line + "\n" for line in lines)
        return scores

    def evaluate(self, step: int) -> dict[str, float]:
        """Greedy decoding on the held-out split; accuracy (and every reward component) per data_source.
        Each rank decodes a contiguous share of the rows (no collectives, except FSDP2's one gathering of the
        weights), then the results are gathered, so every rank must call it."""
        if self.eval_rows is None or len(self.eval_rows) == 0:
            return {}
        if self._eval_batches is None:
            accel = self.accelerator
            share = -(-len(self.eval_rows) // accel.num_processes)
            mine = range(accel.process_index * share, min(len(self.eval_rows), (accel.process_index + 1) * share))
            rows, skipped = self.eval_reader.rows(mine)  # a row whose image fails to decode is left out, counted
            self._eval_skipped = len(skipped)
            self._eval_batches = encode_rows(rows, self.encode)
        # One decoding call per rank, however many batches it holds: under FSDP2 gathering the weights is a
        # collective.
        result = evaluate(self.policy, self._eval_batches, self.mixer, self.cfg.rollout,
                          progress=step / self.cfg.trainer.total_steps, device=self.accelerator.device,
                          run=lambda decode: with_full_parameters(self.policy, self.forward, decode),
                          backend=self.rollout)
        gathered = gather_object([(result.scores, self._eval_skipped)])
        out = {**greedy_metrics(Scores.concat([part[0] for part in gathered]), term=self.cfg.reward.accuracy_term),
               "eval/skipped_rows": sum(part[1] for part in gathered)}
        self.logger.log(step, out)
        self._notify("on_evaluate", step, out)
        return out

    def _notify(self, hook: str, step: int, payload) -> None:
        """Call the script's callbacks (`vlrl.callbacks`), in the main process only."""
        if self.accelerator.is_main_process:
            for callback in self.callbacks:
                getattr(callback, hook)(step, payload)

    def save(self, step: int) -> Path:
        out = save_checkpoint(self.run_dir, step, self.accelerator, self.forward, self.policy.core,
                              self.policy.processor, self.optimizer, self.scheduler, self.cfg.trainer.keep_checkpoints,
                              adapter=self.policy.adapter, sharded=self.accelerator.is_fsdp2,
                              extra=self.reference.save)
        self._last_save = self.clock()  # the next timed save counts training time from here, not the write
        self._notify("on_save", step, out)
        return out


def prompts_per_rank(prompts_per_step: int, num_processes: int) -> int:
    """Each process takes whole prompt groups: prompts_per_step / num_processes of them."""
    per_rank, rem = divmod(prompts_per_step, num_processes)
    if rem or per_rank == 0:
        lower, upper = per_rank * num_processes, (per_rank + 1) * num_processes
        raise ValueError(
            f"data.prompts_per_step={prompts_per_step} is not divisible by the number of processes "
            f"num_processes={num_processes}: each process samples whole prompt groups, so the global batch "
            f"({prompts_per_step} prompts x rollout.group_size) must split evenly; use a multiple of "
            f"{num_processes}, e.g. data.prompts_per_step={upper}" + (f" or {lower}" if lower else "")
        )
    return per_rank
