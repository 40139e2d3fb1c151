"""`vlrl sft` on the tiny model (CPU, offline): the loss is transformers' own cross-entropy over the target tokens,
prompt positions get no loss and no gradient, a few rows are memorised, and `vlrl eval` and `vlrl train` start from
the output."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText

from data_pipelines.build import build
from data_pipelines.config import BuildConfig
from vlrl.cli import main
from vlrl.config import Config, SFTConfig
from vlrl.config_loader import load_config
from vlrl.data import load_rows
from vlrl.data.rows import RowReader
from vlrl.metrics import read_metrics
from vlrl.models.tiny import build_tiny_model
from vlrl.rewards import RewardMixer
from vlrl.rewards.base import RewardInput
from vlrl.rollout import generate
from vlrl.sft import SFTRun, target_text
from vlrl.trainer import Trainer
from vlrl.update import micro_batches

FAST = ("trainer.progress_bar=false", "trainer.device=cpu", "trainer.report_to=[]", "reward.workers=0",
        "optim.warmup_steps=0", "trainer.eval_every=0")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """`vlrl data build` with the programmatic teacher: rl/ (train, test) and chains/ (every row, a chain each)."""
    out = tmp_path_factory.mktemp("sft_data")
    cfg = load_config(BuildConfig, None, [
        f"output_dir={out}", "teacher.kind=programmatic", "curate.eval_fraction=0.25",
        "sources=[{kind: shapes, params: {tasks: [colour, count], rows_per_task: 6}}]"])
    build(cfg)
    return out


@pytest.fixture(scope="module")
def chain_model(built, tmp_path_factory) -> Path:
    """A tiny model whose words cover the problems, answers and chains."""
    rows = load_rows(str(built / "chains"), "train")
    words = [*rows["problem"], *rows["answer"], *rows["reasoning"]]
    return build_tiny_model(tmp_path_factory.mktemp("chain_model") / "m", words=words, seed=0)


def _cfg(out: Path, model: Path, data: Path, *extra: str) -> SFTConfig:
    return load_config(SFTConfig, None, [f"model.path={model}", f"data.path={data}", f"trainer.output_dir={out}",
                                         *FAST, *extra])


def test_targets_are_what_the_rewards_score_right(built):
    rows = RowReader(load_rows(str(built / "chains"), "train")).rows(range(4))[0]
    texts = [target_text(r, t) for r in rows for t in ("reasoning", "answer")]
    assert texts[0] == rows[0].reasoning.strip() and texts[1] == f"<answer>{rows[0].answer}</answer>"
    mixer = RewardMixer(load_config(Config).reward)  # vlrl train's default mix: accuracy + format
    try:
        scores = mixer.score([RewardInput(t, r.answer, r.task, r.data_source)
                              for r, t in zip([r for r in rows for _ in range(2)], texts, strict=True)])
    finally:
        mixer.close()
    assert scores.components["accuracy"].tolist() == [1.0] * 8 and scores.components["format"].tolist() == [1.0] * 8
    bare = dataclasses.replace(rows[0], reasoning="It is red.")  # a chain without answer tags is wrapped
    assert target_text(bare, "reasoning") == f"<think>\nIt is red.\n</think>\n<answer>{rows[0].answer}</answer>"


def _independent_loss(run: SFTRun, rows) -> torch.Tensor:
    """Mean cross-entropy of the target tokens from transformers' own forward with `labels` (-100 on the prompt),
    one unpadded row at a time, each row's mean weighted by its target tokens."""
    batch, _ = run.batch(rows)
    tok, model = run.policy.tokenizer, run.policy.core
    total, count = torch.zeros((), dtype=torch.float64), 0
    for i, row in enumerate(rows):
        prompt = batch.input_ids[i][batch.attention_mask[i] == 1]
        target = tok(target_text(row, "reasoning"), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.cat([prompt, torch.tensor(target)])[None]
        labels = ids.clone()
        labels[:, :len(prompt)] = -100
        images = batch.select_images(batch.prompt_images(i))
        model.model.rope_deltas = None
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels,
                        mm_token_type_ids=(ids == model.config.image_token_id).long(),
                        pixel_values=images.pixel_values, image_grid_thw=images.image_grid_thw)
        total += out.loss.double() * len(target)
        count += len(target)
    return total / count


def test_loss_is_transformers_cross_entropy_on_target_tokens_only(built, chain_model, tmp_path):
    run = SFTRun(_cfg(tmp_path / "run", chain_model, built / "chains", "data.eval_split=''"))
    tasks = run.train_rows["task"]
    pick = [i for i, t in enumerate(tasks) if t == "colour"][:3] + [i for i, t in enumerate(tasks) if t == "count"][:2]
    rows = RowReader(run.train_rows).rows(pick)[0]  # colour and count chains: different lengths, padded
    batch, targets = run.batch(rows)
    [(_, seqs)] = micro_batches(batch, targets, torch.arange(5), 5)
    assert int(targets.completion_mask.sum(1).min()) < targets.completion_ids.shape[1]  # some padding to mask
    with torch.no_grad():
        loss = run.chunk_loss(seqs, float(targets.completion_mask.sum()))
    torch.testing.assert_close(loss.double(), _independent_loss(run, rows), atol=1e-5, rtol=0)

    # Masking: the final norm's output feeds only the LM head, so its gradient is the loss's reach. The prompt
    # positions (but the last, which predicts the first target token) and the padding after a target get none.
    seen = {}

    def keep(module, inputs, output) -> None:
        output.retain_grad()
        seen["h"] = output

    handle = run.policy.language_model.norm.register_forward_hook(keep)
    run.chunk_loss(seqs, float(targets.completion_mask.sum())).backward()
    handle.remove()
    grad = seen["h"].grad.abs().sum(-1)  # [n, L + T]
    T = seqs.targets.shape[1]
    L = seqs.input_ids.shape[1] - T
    assert torch.all(grad[:, :L - 1] == 0)
    predicts = grad[:, L - 1:L - 1 + T]  # position L-1+t predicts target token t
    assert torch.all(predicts[seqs.mask == 1] > 0) and torch.all(predicts[seqs.mask == 0] == 0)
    # and a masked (padding) target token can be anything: the loss does not move
    changed = seqs.targets.clone()
    changed[seqs.mask == 0] = 7
    with torch.no_grad():
        again = run.chunk_loss(type(seqs)(**{**vars(seqs), "targets": changed}), float(targets.completion_mask.sum()))
    assert again.item() == loss.item()


@pytest.fixture(scope="module")
def memorised(built, chain_model, tmp_path_factory) -> SFTRun:
    """SFT on four chains, two colour and two count rows (the rl/ test rows left out), until the tiny model writes
    them back: the text of each task is learnt in ~20 steps, the colour read from the image by ~120 (lr 0.01; a
    higher one did not get there sooner)."""
    out = tmp_path_factory.mktemp("sft_run") / "run"
    cfg = _cfg(out, chain_model, built / "chains", f"sft.eval_data={built / 'rl'}", "data.max_eval_rows=2",
               "sft.batch_size=4", "trainer.total_steps=140", "optim.lr=0.01", "optim.schedule=constant",
               "rollout.max_new_tokens=64", "trainer.save_every=0")
    run = SFTRun(cfg)
    tasks = run.train_rows["task"]
    run.train_rows = run.train_rows.select([i for i, t in enumerate(tasks) if t == "colour"][:2]
                                           + [i for i, t in enumerate(tasks) if t == "count"][:2])
    run.reader, run.sampler.num_rows = RowReader(run.train_rows), 4
    run.fit()
    return run


def test_sft_memorises_a_few_chains_and_vlrl_eval_runs_on_its_output(memorised, built, tmp_path, capsys):
    run = memorised
    losses = [m["loss/sft"] for m in read_metrics(run.run_dir) if "loss/sft" in m]
    assert losses[-1] < 0.05 < 1 < losses[0]
    rows = RowReader(run.train_rows).rows(range(4))[0]
    assert len({r.answer for r in rows}) == 4  # the colour rows differ only in their images
    decoded = generate(run.policy, run.encode(rows, 1), run.cfg.rollout, greedy=True)
    _, targets = run.batch(rows)  # token for token, the end-of-turn token included
    for i in range(4):
        written = decoded.completion_ids[i][decoded.completion_mask[i] == 1]
        assert written.tolist() == targets.completion_ids[i][targets.completion_mask[i] == 1].tolist()
    assert decoded.finished.all()

    out = tmp_path / "eval"
    code = main(["eval", str(run.run_dir / "final"), "--data", str(built / "rl"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and (out / "summary.json").is_file() and "shapes_colour" in printed


def test_vlrl_train_starts_from_the_sft_output(memorised, built, tmp_path):
    final = memorised.run_dir / "final"
    cfg = load_config(Config, None, [
        f"model.path={final}", f"data.path={built / 'rl'}", f"trainer.output_dir={tmp_path / 'grpo'}", *FAST,
        "data.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=64", "trainer.total_steps=1",
        "data.source_weights={}"])
    trainer = Trainer(cfg)
    saved = dict(AutoModelForImageTextToText.from_pretrained(final).named_parameters())
    assert (final / "config.json").is_file() and (final / "trainer_state.pt").is_file()  # as a vlrl train checkpoint
    for name, value in trainer.policy.core.named_parameters():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)
    trainer.fit()
    [step] = [m for m in read_metrics(tmp_path / "grpo") if "reward/mean" in m]
    assert step["reward/format"] > 0.5  # the SFT'd model already answers in the rewarded layout


def _sft_metrics(run: Path) -> list[dict]:
    return [{k: v for k, v in ln.items() if not k.startswith("perf/")} for ln in read_metrics(run)]


def test_interrupted_and_resumed_sft_equals_the_uninterrupted_one(built, chain_model, tmp_path):
    """`vlrl sft --resume RUN`: from the newest checkpoint (step 2 of 4; step 3 ran but was not saved), the same
    metrics lines (step 3's logged line replaced, not repeated) and the same final weights as a run never
    interrupted; and a run directory that holds a run is refused without --resume."""
    common = ("sft.batch_size=4", "trainer.total_steps=4", "trainer.save_every=2", "optim.lr=0.01",
              "trainer.eval_every=2", "data.max_eval_rows=4", "rollout.max_new_tokens=8")
    SFTRun(_cfg(tmp_path / "full", chain_model, built / "chains", *common, "sft.eval_data=" + str(built / "rl"))).fit()
    part = tmp_path / "part"
    SFTRun(_cfg(part, chain_model, built / "chains", *common, "sft.eval_data=" + str(built / "rl"))).fit(stop_after=3)
    assert [m["step"] for m in _sft_metrics(part) if "loss/sft" in m] == [1, 2, 3]
    assert main(["sft", f"trainer.output_dir={part}", f"model.path={chain_model}", f"data.path={built / 'chains'}",
                 *FAST]) == 2  # refused: the directory holds a run
    assert main(["sft", "--resume", str(part), "trainer.progress_bar=false"]) == 0
    full = _sft_metrics(tmp_path / "full")
    assert [m["step"] for m in full if "loss/sft" in m] == [1, 2, 3, 4]
    assert [m["step"] for m in full if "eval/accuracy" in m] == [0, 2, 4]
    assert _sft_metrics(part) == full
    a = dict(AutoModelForImageTextToText.from_pretrained(tmp_path / "full" / "final").named_parameters())
    b = dict(AutoModelForImageTextToText.from_pretrained(part / "final").named_parameters())
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    start = dict(AutoModelForImageTextToText.from_pretrained(chain_model).named_parameters())
    assert any(not torch.equal(a[n], start[n]) for n in a)  # it trained


def test_prompts_over_the_limit_are_left_out_as_in_vlrl_train(built, chain_model, tmp_path, capsys):
    """data.max_prompt_tokens applies to `vlrl sft` as to `vlrl train`: with a limit every prompt is over, one
    message names the limit (no traceback, exit 2) before any weight is loaded; a limit no prompt reaches drops
    nothing and lists nothing in RUN_DIR/dropped_rows.jsonl."""
    args = ["sft", f"model.path={chain_model}", f"data.path={built / 'chains'}", f"sft.eval_data={built / 'rl'}",
            *FAST, "sft.batch_size=4", "trainer.total_steps=1", "trainer.save_every=0"]
    assert main([*args, f"trainer.output_dir={tmp_path / 'a'}", "data.max_prompt_tokens=1"]) == 2
    err = capsys.readouterr().err
    assert "have prompts over data.max_prompt_tokens=1" in err and "Traceback" not in err
    assert not list((tmp_path / "a").glob("checkpoints/*"))
    assert main([*args, f"trainer.output_dir={tmp_path / 'b'}", "data.max_prompt_tokens=30000"]) == 0
    assert (tmp_path / "b" / "dropped_rows.jsonl").read_text() == ""
