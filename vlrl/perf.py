"""Model FLOPs of the update and its utilisation of the accelerator (MFU).

Convention (Kaplan et al. 2020; PaLM's MFU, Chowdhery et al. 2022): a forward pass costs 2 FLOPs per
parameter per token and forward + backward 6; recomputation under activation checkpointing is *not* counted
(MFU measures useful work, so checkpointing lowers it), nor is attention's score computation (small next to
the matmuls at these lengths: 4 * layers * hidden * context per token, about 5 % for 3B at 572 tokens).

Counted per micro-batch, as the update runs it: every token the language model's layers process — all
positions of every row when rows run whole, each distinct prompt once plus the completions when the prompt is
shared (`algorithm.shared_prompt`) — times the layers' parameters, plus the LM head on the completion positions
only (the chunked log-probs never apply it to the prompt). The vision tower's FLOPs are left out: it is frozen
in the recipes and runs once per distinct image.
"""

from __future__ import annotations

import torch

# Dense bf16 peak of common accelerators, TFLOP/s, from the vendors' data sheets (without sparsity).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0}


def peak_tflops(device: torch.device) -> float | None:
    """The bf16 dense peak of `device`, or None where it is not known (CPU, unknown GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def layer_params(policy) -> tuple[int, int]:
    """(parameters of the language model's decoder layers and final norm, parameters of the LM head)."""
    lm = policy.language_model
    embed = lm.get_input_embeddings().weight.numel()
    body = sum(p.numel() for p in lm.parameters()) - embed
    return body, policy.lm_head.weight.numel()


def micro_batch_tokens(seqs) -> tuple[int, int]:
    """(positions the decoder layers process, completion positions the LM head scores) of one micro-batch."""
    targets = seqs.targets.numel()
    if hasattr(seqs, "groups"):  # the generic tier: each row whole, prompt + completion
        return sum(len(rows) * prompt["input_ids"].shape[1] for rows, prompt in seqs.groups) + targets, targets
    if hasattr(seqs, "prompt_ids"):  # shared prompt: each distinct prompt once, completions without the last
        return seqs.prompt_ids.numel() + seqs.targets[:, :-1].numel(), targets
    return seqs.input_ids.numel(), targets


def update_flops(policy, chunks, updates: int) -> float:
    """Model FLOPs (forward + backward) of `updates` passes over the micro-batches `chunks` (filler chunks, which
    add nothing to the loss, are not counted)."""
    body, head = layer_params(policy)
    total = 0
    for mb, seqs in chunks:
        if len(mb):
            layer_tokens, head_tokens = micro_batch_tokens(seqs)
            total += body * layer_tokens + head * head_tokens
    return 6.0 * total * updates
