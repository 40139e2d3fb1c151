"""Chunked log-probs must equal the direct full-logits computation, in value, entropy and gradients."""

import math

import pytest
import torch

from vlrl.algorithms.logprobs import token_logprobs

N, T, H, V = 3, 5, 16, 50  # 15 tokens


def _inputs(seed=0, dtype=torch.float64, bias=False):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, T, H, generator=g, dtype=dtype)
    weight = torch.randn(V, H, generator=g, dtype=dtype) / math.sqrt(H) * 3
    b = torch.randn(V, generator=g, dtype=dtype) if bias else None
    targets = torch.randint(0, V, (N, T), generator=g)
    return hidden, weight, b, targets


def _reference(hidden, weight, bias, targets, temperature):
    logits = hidden.double() @ weight.double().T  # [N, T, V] all at once
    if bias is not None:
        logits = logits + bias.double()
    logprobs = torch.log_softmax(logits / temperature, dim=-1)
    logp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(logprobs.exp() * logprobs).sum(-1)
    return logp, entropy


def test_by_hand_two_token_vocab():
    # hidden [1, 0] and W = I (V = H = 2): logits [1, 0]; temperature 0.5 -> [2, 0]
    # log p(token 0) = 2 - log(e^2 + 1) = 2 - 2.126928 = -0.126928
    # p = [0.880797, 0.119203]; entropy = -(0.880797 * -0.126928 + 0.119203 * -2.126928) = 0.365334
    hidden = torch.tensor([[[1.0, 0.0]]], dtype=torch.float64)
    logp, entropy = token_logprobs(
        hidden, torch.eye(2, dtype=torch.float64), torch.tensor([[0]]), temperature=0.5, with_entropy=True
    )
    assert logp.item() == pytest.approx(2 - math.log(math.exp(2) + 1))
    assert logp.item() == pytest.approx(-0.126928, abs=1e-6)
    assert entropy.item() == pytest.approx(0.365334, abs=1e-6)


def test_uniform_bonus_by_hand_and_its_gradient():
    # Three tokens, logits z = [2, 0, -1] (hidden [2, 0, -1], W = I): lse = log(7.389056 + 1 + 0.367879) =
    # log 8.756935 = 2.169846; the bonus is mean_v log p_v = mean(z) - lse = 1/3 - 2.169846 = -1.836513. Its
    # gradient on z_v is 1/V - p_v: p = softmax(z) = [0.843795, 0.114195, 0.042010] -> [-0.510461, 0.219138,
    # 0.291323]. The entropy H = -sum p log p = 0.524267 pulls the rarest token (log p = -3.169846) up by only
    # -p (log p + H) = 0.042010 * 2.645579 = 0.111141.
    z = torch.tensor([[[2.0, 0.0, -1.0]]], dtype=torch.float64, requires_grad=True)
    _, bonus = token_logprobs(z, torch.eye(3, dtype=torch.float64), torch.tensor([[0]]), with_entropy="uniform")
    assert bonus.item() == pytest.approx(-1.836513, abs=1e-6)
    bonus.sum().backward()
    assert z.grad[0, 0].tolist() == pytest.approx([-0.510461, 0.219138, 0.291323], abs=1e-6)
    z.grad = None
    _, entropy = token_logprobs(z, torch.eye(3, dtype=torch.float64), torch.tensor([[0]]), with_entropy=True)
    assert entropy.item() == pytest.approx(0.524267, abs=1e-6)
    entropy.sum().backward()
    assert z.grad[0, 0, 2].item() == pytest.approx(0.111141, abs=1e-6)
    _, both = token_logprobs(z, torch.eye(3, dtype=torch.float64), torch.tensor([[0]]), with_entropy="entropy+uniform")
    assert both.item() == pytest.approx(0.524267 - 1.836513, abs=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 4, 5, 15, 1024])  # 15 tokens: 4 doesn't divide, 5 does
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("bias", [False, True])
def test_matches_full_log_softmax(chunk_size, temperature, bias):
    hidden, weight, b, targets = _inputs(bias=bias)
    leaves = [hidden, weight] + ([b] if bias else [])
    for x in leaves:
        x.requires_grad_()

    logp, entropy = token_logprobs(
        hidden,
        weight,
        targets,
        temperature=temperature,
        chunk_size=chunk_size,
        with_entropy=True,
        lm_head_bias=b,
    )
    ref_logp, ref_entropy = _reference(hidden, weight, b, targets, temperature)
    assert logp.shape == entropy.shape == (N, T) and logp.dtype == torch.float32
    torch.testing.assert_close(logp.double(), ref_logp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy.double(), ref_entropy, rtol=1e-5, atol=1e-5)

    # gradients of an arbitrary combination of both outputs, against the reference's
    g = torch.Generator().manual_seed(7)
    w_logp, w_ent = torch.randn(N, T, generator=g), torch.randn(N, T, generator=g)
    grads = torch.autograd.grad((logp * w_logp).sum() + (entropy * w_ent).sum(), leaves)
    ref_grads = torch.autograd.grad(
        (ref_logp * w_logp.double()).sum() + (ref_entropy * w_ent.double()).sum(), leaves
    )
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_temperature_changes_the_result():
    hidden, weight, _, targets = _inputs()
    plain, _ = token_logprobs(hidden, weight, targets)
    hot, _ = token_logprobs(hidden, weight, targets, temperature=0.7)
    assert not torch.allclose(plain, hot)
    torch.testing.assert_close(
        hot.double(), _reference(hidden, weight, None, targets, 0.7)[0], rtol=1e-5, atol=1e-5
    )


def test_bf16_inputs_are_computed_in_float32():
    # the logits are formed in float32 from the bf16 values, so the result equals the float64 reference
    # on the same (bf16-rounded) numbers, far tighter than bf16 logits would allow
    hidden, weight, _, targets = _inputs(dtype=torch.bfloat16)
    logp, _ = token_logprobs(hidden, weight, targets, chunk_size=4)
    assert logp.dtype == torch.float32
    torch.testing.assert_close(
        logp.double(), _reference(hidden, weight, None, targets, 1.0)[0], rtol=1e-5, atol=1e-5
    )


def test_without_entropy_returns_none_and_no_grad_mode():
    hidden, weight, _, targets = _inputs()
    with torch.no_grad():
        logp, entropy = token_logprobs(hidden, weight, targets, chunk_size=4)
    assert entropy is None and not logp.requires_grad
    torch.testing.assert_close(
        logp.double(), _reference(hidden, weight, None, targets, 1.0)[0], rtol=1e-5, atol=1e-5
    )


def test_chunks_are_checkpointed(monkeypatch):
    # with grad enabled every chunk goes through torch.utils.checkpoint (15 tokens / 4 -> 4 chunks);
    # without grad none does
    import vlrl.algorithms.logprobs as module

    calls = []
    real = module.checkpoint

    def spy(fn, *args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(module, "checkpoint", spy)
    hidden, weight, _, targets = _inputs()
    hidden.requires_grad_()
    token_logprobs(hidden, weight, targets, chunk_size=4)
    assert calls == [False] * 4
    calls.clear()
    with torch.no_grad():
        token_logprobs(hidden, weight, targets, chunk_size=4)
    assert calls == []


def test_errors():
    hidden, weight, _, targets = _inputs()
    with pytest.raises(ValueError, match="targets"):
        token_logprobs(hidden, weight, targets[:, :-1])
    with pytest.raises(ValueError, match="chunk_size"):
        token_logprobs(hidden, weight, targets, chunk_size=0)
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(hidden, weight, targets, temperature=0.0)


def test_no_chunk_logits_kept_for_backward():
    # Autograd must not keep any [chunk x vocab] tensor: with chunk 32 and V = 1000 such a tensor has 32,000
    # elements, more than anything else here (the weight has 16,000). Without checkpointing the softmax and
    # logits of every chunk would be saved.
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 50, 16, generator=g, requires_grad=True)
    weight = torch.randn(1000, 16, generator=g, requires_grad=True)
    targets = torch.randint(0, 1000, (4, 50), generator=g)
    saved = []

    def pack(x):
        saved.append(x.numel())
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        logp, entropy = token_logprobs(hidden, weight, targets, chunk_size=32, with_entropy=True)
    assert saved and max(saved) < 32 * 1000
    (logp.sum() + entropy.sum()).backward()  # and backward still works by recomputation
    assert hidden.grad is not None and weight.grad is not None
