"""`vlrl sft`: supervised fine-tuning on a dataset's reasoning chains (`sft.target=reasoning`) or answers
(`sft.target=answer`): the SFT arm of the comparison VLAA-Thinking (arXiv 2504.11468) made between SFT on
distilled chains, GRPO, and SFT then GRPO.

It is built from the parts `vlrl train` uses, so the arms differ only in their objective: the model is loaded by
`load_policy` (the family seam, LoRA, a frozen tower), prompts are encoded by `PromptEncoder.for_policy` (the
chat template and image handling the policy samples with), the target runs through the update's own forward
(`CompletionForward` on `gather_sequences`, as if the policy had written it), and checkpoints, metrics,
trackers and the greedy evaluation are the trainer's. A finished run leaves `RUN_DIR/final`, the same HF-format
checkpoint a `vlrl train` run leaves, which `vlrl train model.path=RUN_DIR/final` and `vlrl eval` start from.

Loss: cross-entropy of the target tokens (end-of-turn included) given the prompt, mean over the step's target
tokens (all processes: `loss_totals`); prompt tokens are never predicted. No packing, no truncation.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from vlrl.checkpoint import is_sharded_checkpoint, load_sharded, load_trainer_state, save_checkpoint
from vlrl.config import SFTConfig
from vlrl.config_loader import save_config
from vlrl.data import PromptEncoder, StepSampler, load_rows
from vlrl.data.rows import RowReader
from vlrl.data.schema import Row
from vlrl.data.validation import scan_split
from vlrl.data.vocab import check_unknown_tokens, dataset_texts
from vlrl.evaluation import encode_rows, evaluate, greedy_metrics
from vlrl.metrics import MetricsLogger, StageTimer
from vlrl.models.check import check_model_path
from vlrl.models.policy import load_policy
from vlrl.rewards import RewardMixer
from vlrl.rewards.base import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN, extract_answer
from vlrl.rewards.mixer import Scores
from vlrl.rollout.types import Rollouts
from vlrl.startup import claim_run_dir, data_path, drop_long, model_path, resume_checkpoint
from vlrl.trackers import check_report_to, finish_trackers, make_trackers, start_trackers
from vlrl.update import (
    CompletionForward,
    gradient_sync,
    loss_totals,
    lr_factor,
    micro_batches,
    with_full_parameters,
)

LOGPROB_CHUNK = 1024  # tokens per LM-head chunk (`vlrl.algorithms.logprobs`)


class SFTDataError(ValueError):
    """Rows that cannot be trained on as asked (no reasoning chain, a word the tokenizer lacks)."""


def target_text(row: Row, target: str) -> str:
    """The text the model learns to write after `row`'s prompt (see `sft.target`): a reasoning chain holding
    `<answer>…</answer>` as it is (the chains set's verify stage kept only such chains), a chain without one
    wrapped as `<think>chain</think><answer>ANSWER</answer>`, or `<answer>ANSWER</answer>`. The format reward
    scores each 1 and the accuracy reward reads ANSWER from it."""
    if target == "answer":
        return f"{ANSWER_OPEN}{row.answer}{ANSWER_CLOSE}"
    if target != "reasoning":
        raise ValueError(f"sft.target must be reasoning or answer, got {target!r}")
    chain = (row.reasoning or "").strip()
    if not chain:
        raise SFTDataError(f"row {row.id!r} has no reasoning chain (sft.target=reasoning): train on the chains/ set "
                           "of `vlrl data build`, or on answers with sft.target=answer")
    if extract_answer(chain) is not None:
        return chain
    return f"{THINK_OPEN}\n{chain}\n{THINK_CLOSE}\n{ANSWER_OPEN}{row.answer}{ANSWER_CLOSE}"


def end_of_turn_id(policy) -> int:
    """The token that ends the assistant's turn, among those that end a rollout: the tokenizer's eos."""
    eos = policy.tokenizer.eos_token_id
    return eos if eos in policy.eos_token_ids else policy.eos_token_ids[0]


def target_rollouts(policy, texts: list[str]) -> Rollouts:
    """The targets as a rollout of G = 1 would hold them: ids [n, T] (each text's tokens, then the end-of-turn
    token, then padding) and mask [n, T] (1 on the text and end-of-turn tokens)."""
    tokens = [ids + [end_of_turn_id(policy)]
              for ids in policy.tokenizer(texts, add_special_tokens=False)["input_ids"]]
    T = max(map(len, tokens))
    ids = torch.full((len(tokens), T), policy.pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(tokens), T, dtype=torch.long)
    for i, t in enumerate(tokens):
        ids[i, :len(t)], mask[i, :len(t)] = torch.tensor(t), 1
    return Rollouts(ids, mask, torch.zeros(len(texts), T), list(texts), torch.ones(len(texts), dtype=torch.bool), 1)


def sft_loss(logp: torch.Tensor, mask: torch.Tensor, num_tokens: float) -> torch.Tensor:
    """Summed negative log-likelihood of the target tokens over `num_tokens`: logp, mask [n, T]."""
    return -(logp * mask).sum() / num_tokens


class SFTRun:
    def __init__(self, cfg: SFTConfig, overwrite: bool = False, resume: bool = False):
        """`resume`: continue the run in trainer.output_dir from its newest complete checkpoint (weights,
        optimiser, schedule, random state; the metrics after it are dropped), as `vlrl train --resume` does."""
        self.cfg, self.run_dir, t = cfg, Path(cfg.trainer.output_dir), cfg.trainer
        cpu = t.device == "cpu" or (t.device == "auto" and not torch.cuda.is_available())
        check_report_to(t.report_to)
        self.accelerator = acc = Accelerator(cpu=cpu, step_scheduler_with_optimizer=False,
                                             log_with=make_trackers(cfg, self.run_dir, resume) or None)
        if cfg.sft.batch_size % acc.num_processes:
            raise ValueError(f"sft.batch_size={cfg.sft.batch_size} must be a multiple of the {acc.num_processes} "
                             "processes: each takes an equal share of a step's rows")
        if cfg.model.path != "tiny":
            check_model_path(cfg.model.path)
        torch.manual_seed(t.seed)
        claim_run_dir(acc, self.run_dir, resume, overwrite)  # every rank raises, or none
        ckpt = resume_checkpoint(acc, self.run_dir) if resume else None
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.train_rows, self.eval_rows, scans = self._load_data()
        base_path = self._model_path()
        # As `vlrl train`: prompts over data.max_prompt_tokens are left out (never cut), counted and listed in
        # RUN_DIR/dropped_rows.jsonl, before the weights load.
        self.train_rows, self.eval_rows, _ = drop_long(cfg, self.run_dir, acc, base_path, self.train_rows,
                                                       self.eval_rows, scans)
        self.policy = self._load_policy(base_path, ckpt)
        self._check_targets()
        if cfg.sft.epochs > 0:
            t.total_steps = math.ceil(cfg.sft.epochs * len(self.train_rows) / cfg.sft.batch_size)
        if acc.is_main_process:
            save_config(cfg, self.run_dir / "config.yaml")
        self.encode = PromptEncoder.for_policy(self.policy, cfg.model.min_pixels, cfg.model.max_pixels,
                                               cfg.data.system_prompt, cfg.data.prompt_suffix)
        self.forward = CompletionForward(self.policy.model)
        o = cfg.optim
        params = [p for p in self.forward.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(o, t.total_steps, s))
        self.forward, self.optimizer, self.scheduler = acc.prepare(self.forward, optimizer, scheduler)
        self.start_step = 0
        if ckpt is not None:
            if is_sharded_checkpoint(ckpt):
                load_sharded(ckpt, self.forward, self.optimizer)
            self.start_step = load_trainer_state(ckpt, self.optimizer, self.scheduler)
            if acc.is_main_process:
                print(f"resuming from {ckpt} at step {self.start_step} of {t.total_steps}", flush=True)
        self.reader = RowReader(self.train_rows)
        self.sampler = StepSampler(len(self.train_rows), cfg.sft.batch_size, t.seed)
        per_rank = cfg.sft.batch_size // acc.num_processes
        self.positions = range(acc.process_index * per_rank, (acc.process_index + 1) * per_rank)
        self.mixer = RewardMixer(cfg.reward)
        self.logger = MetricsLogger(self.run_dir, enabled=acc.is_main_process, log=acc.log)
        self.logger.truncate_after(self.start_step)
        start_trackers(acc, cfg, self.run_dir, resume)  # after the trim, as in `vlrl train`
        self.timer = StageTimer(torch.cuda.synchronize if acc.device.type == "cuda" else None)
        self._eval_batches = None

    # ---- setup -------------------------------------------------------------------------------------------
    def _load_data(self):
        """(train, eval, scans): the training split without the rows of the evaluated split (by id), the evaluated
        rows, and both splits' scans (`scan_split`: every row checked, image headers only)."""
        d, acc = self.cfg.data, self.accelerator
        path = data_path(self.cfg, self.run_dir, acc)  # as `vlrl train`: `synthetic` is generated into the run
        train = load_rows(path, d.train_split)
        evals, scans = None, {}
        if d.eval_split:
            eval_path = self.cfg.sft.eval_data or path
            evals = load_rows(eval_path, d.eval_split)
            evals = evals.select(range(min(len(evals), d.max_eval_rows)))
            scans["eval"] = scan_split(evals, f"{eval_path}, split {d.eval_split!r} (data.eval_split)")
            held = set(evals["id"])
            keep = [i for i, row_id in enumerate(train["id"]) if row_id not in held]
            if len(keep) < len(train) and acc.is_main_process:
                print(f"sft: left out {len(train) - len(keep)} training rows held out in {eval_path} "
                      f"split {d.eval_split!r}", flush=True)
            train = train.select(keep)
        if len(train) == 0:
            raise SFTDataError(f"data.path={path}: no training rows left")
        scans["train"] = scan_split(train, f"data.path={path}, split {d.train_split!r} (data.train_split)")
        return train, evals, scans

    def _load_policy(self, base_path, ckpt):
        """The base model, or the checkpoint's weights when resuming (a LoRA checkpoint holds the adapter alone,
        put on the base model; a sharded one is loaded after `prepare`)."""
        from vlrl.models.lora import is_adapter_checkpoint

        device = self.accelerator.device
        if ckpt is not None and is_adapter_checkpoint(ckpt):
            return load_policy(self.cfg.model, base_path, device, adapter_path=ckpt)
        if ckpt is None or is_sharded_checkpoint(ckpt):
            return load_policy(self.cfg.model, base_path, device)
        return load_policy(self.cfg.model, ckpt, device)

    def _model_path(self):
        """model.path, or the tiny model whose words are the prompts, answers and targets it will meet."""
        d = self.cfg.data
        return model_path(self.cfg, self.run_dir, self.accelerator, lambda: [
            *dataset_texts([self.train_rows, self.eval_rows], d.system_prompt, d.prompt_suffix),
            *self._targets(range(len(self.train_rows)))])

    def _targets(self, indices) -> list[str]:  # from the text columns alone: no image decoded
        ds = self.train_rows.select(indices)
        chains = ds["reasoning"] if "reasoning" in ds.column_names else [None] * len(ds)
        return [target_text(SimpleNamespace(id=i, answer=a, reasoning=r), self.cfg.sft.target)
                for i, a, r in zip(ds["id"], ds["answer"], chains, strict=True)]

    def _check_targets(self) -> None:
        """Every prompt, answer and target must be writable by the tokenizer (a word-level vocabulary can lack
        words: the model would learn `<unk>`)."""
        d, tok = self.cfg.data, self.policy.tokenizer
        splits = check_unknown_tokens(tok, {"train": self.train_rows, "eval": self.eval_rows}, d.unknown_tokens,
                                      d.system_prompt, d.prompt_suffix)
        self.train_rows, self.eval_rows = splits["train"], splits["eval"]
        if tok.unk_token_id is None:
            return
        texts = self._targets(range(len(self.train_rows)))
        bad = [i for i, ids in enumerate(tok(texts, add_special_tokens=False)["input_ids"]) if tok.unk_token_id in ids]
        if bad:
            raise SFTDataError(f"{len(bad)} targets hold words the tokenizer does not have (rows "
                               f"{[self.train_rows[i]['id'] for i in bad[:5]]}); use a model whose vocabulary has "
                               "them (model.path=tiny builds one from the data)")

    # ---- the loop ----------------------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> dict[str, float]:
        """Train to trainer.total_steps (or stop once step `stop_after` is done, as an interruption would),
        evaluating every trainer.eval_every steps and at the start and end, saving every trainer.save_every
        steps and at the end; returns the last evaluation's metrics."""
        t = self.cfg.trainer
        last_eval = self.evaluate(0) if t.eval_every and self.start_step == 0 else {}
        bar = tqdm(range(self.start_step, t.total_steps), initial=self.start_step, total=t.total_steps,
                   disable=not (t.progress_bar and self.accelerator.is_main_process), desc="sft")
        for step in bar:
            metrics = self.train_step(step)
            self.logger.log(step + 1, metrics)
            bar.set_postfix({"loss": f"{metrics['loss/sft']:.3f}"})
            done = step + 1 == t.total_steps
            if t.eval_every and ((step + 1) % t.eval_every == 0 or done):
                last_eval = self.evaluate(step + 1)
            if done or (t.save_every and (step + 1) % t.save_every == 0):
                self.save(step + 1)
            if stop_after is not None and step + 1 >= stop_after:
                break
        finish_trackers(self.accelerator)
        self.mixer.close()
        return last_eval

    def batch(self, rows: list[Row]) -> tuple:
        """(PromptBatch of the rows' prompts, their targets as `Rollouts`), on the run's device."""
        batch = self.encode(rows, 1).to(self.accelerator.device)
        targets = target_rollouts(self.policy, [target_text(r, self.cfg.sft.target) for r in rows])
        return batch, Rollouts(*(x.to(batch.input_ids.device) if isinstance(x, torch.Tensor) else x
                                 for x in vars(targets).values()))

    def chunk_loss(self, seqs, num_tokens: float) -> torch.Tensor:
        """`sft_loss` of one micro-batch (`micro_batches` of a `batch`) through the prepared forward."""
        logp, _ = self.forward(self.policy, seqs, temperature=1.0, chunk_size=LOGPROB_CHUNK)
        return sft_loss(logp, seqs.mask, num_tokens)

    def train_step(self, step: int) -> dict[str, float]:
        acc, timer, s = self.accelerator, self.timer, self.cfg.sft
        with timer("data"):
            rows, skipped = self.reader.step_rows(self.sampler, step, self.positions)
            batch, targets = self.batch(rows)
            index = torch.arange(len(rows), device=batch.input_ids.device)
            chunks = micro_batches(batch, targets, index, s.micro_batch_size or len(rows))
        with timer("update"):
            self.forward.train()
            totals = loss_totals(acc, targets.completion_mask, 0)
            loss_sum = 0.0
            for k, (_, seqs) in enumerate(chunks):
                with gradient_sync(acc, self.forward, sync=k == len(chunks) - 1):
                    loss = self.chunk_loss(seqs, totals.num_tokens)
                    acc.backward(loss)
                loss_sum += float(loss.detach())
            out = {} if self.cfg.optim.max_grad_norm <= 0 else {"loss/grad_norm": float(
                acc.clip_grad_norm_(self.forward.parameters(), self.cfg.optim.max_grad_norm))}
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
        stats = torch.tensor([loss_sum, float(targets.completion_mask.sum()), len(rows), len(skipped)],
                             dtype=torch.float64, device=acc.device)
        loss, tokens, n, skip = acc.reduce(stats, reduction="sum").tolist()
        return {"loss/sft": loss / acc.num_processes, "sft/target_tokens": tokens / n, **out, **timer.pop(),
                "optim/lr": self.scheduler.get_last_lr()[0], "data/skipped_rows": skip}

    def evaluate(self, step: int) -> dict[str, float]:
        """Greedy decoding of the evaluated rows, scored by the reward mix (the trainer's evaluation); each
        process decodes a share, then the scores are gathered, so every process must call it."""
        if self.eval_rows is None or len(self.eval_rows) == 0:
            return {}
        acc = self.accelerator
        if self._eval_batches is None:
            share = -(-len(self.eval_rows) // acc.num_processes)
            mine = range(acc.process_index * share, min(len(self.eval_rows), (acc.process_index + 1) * share))
            rows, skipped = RowReader(self.eval_rows).rows(mine)
            self._eval_skipped = len(skipped)
            self._eval_batches = encode_rows(rows, self.encode)
        self.forward.eval()
        result = evaluate(self.policy, self._eval_batches, self.mixer, self.cfg.rollout,
                          progress=step / max(1, self.cfg.trainer.total_steps), device=acc.device,
                          run=lambda decode: with_full_parameters(self.policy, self.forward, decode))
        gathered = gather_object([(result.scores, self._eval_skipped)])
        out = {**greedy_metrics(Scores.concat([g[0] for g in gathered]), term=self.cfg.reward.accuracy_term),
               "eval/skipped_rows": sum(g[1] for g in gathered)}
        self.logger.log(step, out)
        return out

    def save(self, step: int) -> Path:
        return save_checkpoint(self.run_dir, step, self.accelerator, self.forward, self.policy.core,
                               self.policy.processor, self.optimizer, self.scheduler,
                               self.cfg.trainer.keep_checkpoints, adapter=self.policy.adapter,
                               sharded=self.accelerator.is_fsdp2)
