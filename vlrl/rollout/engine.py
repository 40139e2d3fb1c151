"""The fast rollout engine: `cached`'s sharing, decoded into a static KV cache with fixed-shape steps that a
CUDA graph can replay.

What it shares with `cached` (and why the two sample the same tokens for the same seeds): each prompt's images
are encoded once and the prompt is prefilled once, by the same calls; the G samples of prompt p are rows
p*G .. p*G+G-1; every generated token takes, on all three mRoPE axes, one more than the largest prompt position
of its row, plus the step; tokens are chosen by `sampling.sample_next` from the same logits and the same
per-row uniforms (`group_uniforms`), EOS banned before `min_new_tokens` alike; finished rows are padded and masked by `finish_rollouts`.

What it changes:
- Decode writes into one preallocated buffer per layer ([N, kv_heads, L + max_new_tokens, head_dim],
  `static_cache.DecodeState`) at the step's slot, through a small `Cache` subclass the model's own attention
  calls; the mask over the buffer (prompt padding, generated slots so far) is built by the engine on device and
  handed to the model prepared (`Policy.decode_mask`). A step therefore has the same shapes and addresses
  every time: on CUDA with `rollout.cuda_graphs` it is captured once per batch-size bucket and replayed; on CPU
  the same function runs eagerly. Only the model step (embedding, layers, LM head) is in the graph; sampling
  runs eagerly after it, so it is literally `cached`'s code.
- Finished rows are compacted away rather than masked: when the rows still running fit a smaller bucket
  (the full batch, then powers of two below it), they are moved to the front of every buffer and the step runs
  on that prefix. Masking alone would keep paying for finished rows until the longest completion ends;
  compaction costs one `index_select` per buffer per bucket change (a handful per rollout) and few graphs
  (one per bucket visited). Filler rows that round a batch up to its bucket are marked done from the start
  and write into a spare output row, so outputs are the same with and without compaction.
- Attention reads all L + max_new_tokens slots every step (masked beyond the current one): the price of fixed
  shapes, small while completions are not much longer than prompts.
- Without per-prompt seeds, the uniforms come from `generator` up front ([N, max_new_tokens]), so samples do
  not depend on compaction; they then differ from `cached`'s multinomial draws (both are exact samples). With
  seeds, as in training, the two backends agree.

Graphs are captured per `generate` call and dropped with it, so the KV buffers are not held through the update.
The host syncs once per step (the count of running rows: it ends the loop and picks the bucket), plus a
decode of the running rows' text when stop strings are set. Attention runs through `sdpa` or `eager`
(`Policy.decode_mask`); `flash_attention_2` takes no padded static cache, so the engine refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vlrl.config import RolloutConfig
from vlrl.data.prompts import PromptBatch
from vlrl.models.base import next_positions
from vlrl.models.policy import Policy
from vlrl.rollout.sampling import banned_at, group_uniforms, sample_next
from vlrl.rollout.static_cache import DecodeState
from vlrl.rollout.stopping import StopChecker
from vlrl.rollout.types import Rollouts, finish_rollouts


def buckets(n: int) -> list[int]:
    """Batch sizes the decode step runs at, largest first: n, then the powers of two below it."""
    sizes = [n]
    p = 1
    while p < n:
        sizes.append(p)
        p *= 2
    return sorted(set(sizes), reverse=True)


def bucket_for(active: int, sizes: Sequence[int]) -> int:
    """The smallest bucket that holds `active` rows."""
    return min(s for s in sizes if s >= active)


def use_cuda_graphs(cfg: RolloutConfig, device: torch.device) -> bool:
    """Graphs only where they exist: `rollout.cuda_graphs` is ignored on CPU (the step runs eagerly)."""
    return bool(cfg.cuda_graphs) and device.type == "cuda"


def decode_step(policy: Policy, state: DecodeState, batch: int) -> torch.Tensor:
    """Feed `state.tokens[:batch]` at `state.slot`: logits [batch, V] (float) for the next token. Reads only
    device tensors of fixed shape, so it can be captured in a CUDA graph."""
    hidden, _ = policy.forward_tokens(state.tokens[:batch].unsqueeze(1), None, state.positions(batch),
                                      policy.decode_mask(state.valid(batch)), past_key_values=state.cache(batch),
                                      use_cache=True)
    return policy.lm_head(hidden[:, -1]).float()


class StepRunner:
    """Runs `decode_step` at a bucket size: eagerly, or by replaying a CUDA graph captured the first time the
    bucket is used (all buckets share one memory pool; they are captured and replayed largest first)."""

    def __init__(self, policy: Policy, state: DecodeState, use_graphs: bool, warmup: int = 2):
        self.policy, self.state, self.use_graphs, self.warmup = policy, state, use_graphs, warmup
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        self.pool = None

    def __call__(self, batch: int) -> torch.Tensor:
        if not self.use_graphs:
            return decode_step(self.policy, self.state, batch)
        if batch not in self.graphs:
            self._capture(batch)
        self.graphs[batch].replay()
        return self.outputs[batch]

    def _capture(self, batch: int) -> None:
        # Warm up on a side stream (allocator and kernel selection settle before capture). Each run writes this
        # step's keys/values at the same slot from the same inputs, so repeating the step changes nothing.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                decode_step(self.policy, self.state, batch)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self.outputs[batch] = decode_step(self.policy, self.state, batch)
        self.pool = graph.pool() if self.pool is None else self.pool
        self.graphs[batch] = graph


def _prefill(policy: Policy, batch: PromptBatch, max_new_tokens: int) -> tuple[DecodeState, torch.Tensor]:
    """Encode images and prefill each prompt once (as `cached` does) -> (decode state of N = P*G rows, logits of
    the first generated token [N, V])."""
    G = batch.group_size
    features = policy.image_features(batch.pixel_values, batch.image_grid_thw, batch.vision_states)
    positions = policy.prompt_positions(batch)  # [3, P, L]
    hidden, cache = policy.forward_tokens(batch.input_ids, features, positions, batch.attention_mask, use_cache=True)
    logits = policy.lm_head(hidden[:, -1]).float().repeat_interleave(G, dim=0)  # [N, V]
    next_pos = next_positions(positions)  # [P]
    state = DecodeState.from_prefill(cache, batch.attention_mask, next_pos, G, max_new_tokens)
    return state, logits


def _uniforms(cfg: RolloutConfig, N: int, P: int, G: int, greedy: bool, generator: torch.Generator | None,
              seeds: Sequence[int] | None) -> torch.Tensor | None:
    """[N + 1, max_new_tokens] float64 uniforms per row (the extra row feeds filler rows), or None (greedy)."""
    if greedy:
        return None
    T = cfg.max_new_tokens
    if seeds is not None:
        if len(seeds) != P:
            raise ValueError(f"{len(seeds)} seeds for {P} prompts")
        table = group_uniforms(seeds, G, T)
    else:
        device = generator.device if generator is not None else "cpu"
        table = torch.rand(N, T, generator=generator, dtype=torch.float64, device=device).cpu()
    return torch.cat([table, torch.full((1, T), 0.5, dtype=torch.float64)])


@torch.no_grad()
def generate_engine(policy: Policy, batch: PromptBatch, cfg: RolloutConfig, generator: torch.Generator | None = None,
                    greedy: bool = False, seeds: Sequence[int] | None = None, compact: bool = True) -> Rollouts:
    """The `engine` backend (same contract as `generate`); `compact=False` keeps finished rows in the batch
    (masked), which tests use to check that compaction changes nothing."""
    device = policy.device
    batch = batch.to(device)
    P, G, T = batch.num_prompts, batch.group_size, cfg.max_new_tokens
    N, pad = P * G, policy.pad_token_id
    banned = torch.tensor(policy.banned_token_ids, dtype=torch.long, device=device)
    eos = torch.tensor(policy.eos_token_ids, dtype=torch.long, device=device)
    uniforms = _uniforms(cfg, N, P, G, greedy, generator, seeds)
    uniforms = None if uniforms is None else uniforms.to(device)
    temperature = 0.0 if greedy else cfg.temperature

    state, logits = _prefill(policy, batch, T)
    runner = StepRunner(policy, state, use_cuda_graphs(cfg, device))
    sizes = buckets(N) if compact else [N]
    # Batch row i (of B) is completion rows[i]; output row N is a spare that absorbs filler rows' writes.
    B, rows = N, torch.arange(N, device=device)
    done = torch.zeros(N, dtype=torch.bool, device=device)  # [B]
    out_tokens = torch.full((N + 1, T), pad, dtype=torch.long, device=device)
    out_logps = torch.zeros(N + 1, T, device=device)
    stops = StopChecker(policy.tokenizer, cfg.stop, N, cfg.min_new_tokens)
    L, steps = batch.input_ids.shape[1], 0
    for t in range(T):
        tok, logp = sample_next(logits, temperature, cfg.top_k, cfg.top_p, banned_at(t, banned, eos, cfg.min_new_tokens),
                                None,
                                None if uniforms is None else uniforms[rows, t])
        tok = torch.where(done, torch.full_like(tok, pad), tok)
        out_tokens[rows, t], out_logps[rows, t] = tok, logp
        done = _stop_rows(stops, rows, done | torch.isin(tok, eos), tok)
        steps = t + 1
        active = int((~done).sum())  # the one host sync per step (also what ends the loop early)
        if active == 0 or t == T - 1:
            break
        if bucket_for(active, sizes) < B:
            B = bucket_for(active, sizes)
            rows, done, tok = _compact(state, rows, done, tok, B, spare=N)
        state.tokens[:B].copy_(tok)
        state.slot.fill_(L + t)  # token t is written at slot L + t
        logits = runner(B)
    return finish_rollouts(policy, batch, out_tokens[:N, :steps], out_logps[:N, :steps], stops.stop_at, cfg.stop)


def _stop_rows(stops: StopChecker, rows: torch.Tensor, done: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
    """done [B] with the rows whose text now contains a stop string set (no-op without stop strings)."""
    if not stops.stops:
        return done
    live = (~done).nonzero().squeeze(1)
    live_rows = rows[live].tolist()
    hits = set(stops.update(live_rows, tok[live].tolist()))
    if hits:
        done = done.clone()
        done[live[torch.tensor([r in hits for r in live_rows], device=live.device)]] = True
    return done


def _compact(state: DecodeState, rows: torch.Tensor, done: torch.Tensor, tok: torch.Tensor, size: int,
             spare: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move the running rows to the front of the state and shrink the batch to `size` rows; rows past the
    running ones are fillers (copies of the first running row, done, writing to the `spare` output row).
    Returns the new (rows [size], done [size], tokens to feed [size])."""
    running = (~done).nonzero().squeeze(1)
    n = running.shape[0]
    select = torch.cat([running, running[:1].expand(size - n)])
    state.compact(select)
    is_filler = torch.arange(size, device=rows.device) >= n
    return (rows[select].masked_fill(is_filler, spare), is_filler, tok[select])
