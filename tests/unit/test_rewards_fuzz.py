"""Fuzz: hostile completions through every built-in verifier — 1,000 in the default run, 10,000 in the full
fuzz (``python -m pytest -q -m full_fuzz tests/unit/test_rewards_fuzz.py``, about a minute on 2 quiet cores).

No exception may escape a verifier on model output (a verifier that raises is reported as a failed call
here, and its ground truths are valid, so any failure is a bug), every score is in [0, 1] or None
(penalties too: they return the amount of penalty), and no call runs past its time limit by more than the
pool's grace. Run with ``-s`` to see the slowest call of each verifier. The default run checks no time bound
(a shared machine can be slow at any moment): its limit is long, so only a hang times out.
"""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from vlrl.rewards import RewardInput, registered_rewards
from vlrl.rewards.runner import FAILED, HARD_GRACE_S, TIMEOUT, RewardCall, RewardPool

N_COMPLETIONS = 10_000  # the full fuzz
N_QUICK = 1_000  # the default run
TIMEOUT_S = 2.0
QUICK_TIMEOUT_S = 60.0
SIZES = {"image_sizes": ((640, 480),), "resized_sizes": ((616, 476),)}
BOXES = '[{"bbox_2d": [10, 10, 50, 50], "label": "cat"}, {"bbox_2d": [60, 60, 90, 90], "label": "dog"}]'

# reward -> (task, ground truth, params, extra RewardInput fields)
CASES = {
    "accuracy": None,  # routed by task: cycles through the tasks below
    "exact_text": ("colour", "red cube", {}, {}),
    "number": ("count", "42", {"single": True}, {}),
    "choice": ("mcq", "B", {}, {"meta": {"options": ["cat", "dog", "bird"]}}),
    "one_of": ("colour", "red", {"options": ["red", "blue", "green"]}, {}),
    "math": ("math", "\\frac{1}{2}", {}, {}),
    "ocr": ("ocr", "Hello World 2024", {}, {}),
    "yes_no": ("yes_no", "yes", {}, {}),
    "iou": ("grounding", "[10, 10, 50, 50]", {"box_format": "qwen2_5_vl", "threshold": "dynamic"}, SIZES),
    "detection": ("detection", BOXES, {"box_format": "qwen2_5_vl", "iou_threshold": "dynamic"}, SIZES),
    "map": ("detection", BOXES, {"box_format": "qwen2_5_vl"}, SIZES),
    "format": ("colour", "red", {"require_think": True, "partial_credit": True}, {}),
    "overlong": ("colour", "red", {}, {"num_tokens": 900, "max_tokens": 1000}),
    "repetition": ("colour", "red", {}, {}),
    "random": ("colour", "red", {"p": 0.5}, {}),
    "incorrect": ("count", "42", {}, {}),
}
# Model-scored rewards need a server or a checkpoint; their failure accounting has its own tests
# (tests/unit/test_rewards_judge.py, tests/unit/test_rewards_reward_model.py).
MODEL_SCORED = {"judge", "reward_model"}
ROUTED = ["colour", "count", "mcq", "math", "ocr", "yes_no", "grounding", "detection"]

LATEX = ["\\frac{", "}{", "}", "\\sqrt{", "^{", "_{", "\\left(", "\\right)", "\\sum_{i=1}^{n}", "\\int", "x", "y",
         "1", "9", "+", "-", "\\cdot", "\\pi", "e", "\\infty", "=", "\\begin{pmatrix}", "&", "\\\\",
         "\\end{pmatrix}", "\\boxed{", "\\text{", "\\%", ",", ".", "\\dfrac", "\\log", "!", "\\times", "(", ")"]


def _unicode(rng: random.Random, n: int) -> str:
    # Any code point, lone surrogates included: decoded model output can hold anything.
    return "".join(map(chr, rng.choices(range(0x110000), k=n)))


def _boxes(rng: random.Random, n: int) -> str:
    def coord():
        kind = rng.randrange(10)
        if kind < 6:
            return str(rng.randint(0, 1000))
        if kind == 6:
            return f"{rng.uniform(-1e4, 1e4):.3f}"
        if kind == 7:
            return "9" * rng.randint(1, 400)
        return rng.choice(["1e308", "-1e308", "nan", "inf", "0", "1e-320"])

    parts = []
    for _ in range(n):
        box = f"[{coord()}, {coord()}, {coord()}, {coord()}]"
        parts.append(rng.choice([box, f'{{"bbox_2d": {box}, "label": "{rng.choice(["cat", "dog", "x" * 50])}"}}',
                                 f"{{'bbox_2d': {box}, 'confidence': {coord()}}}"]))
    return "[" + ", ".join(parts) + "]"


def hostile(rng: random.Random) -> str:
    """One hostile completion; the kinds are drawn so each appears hundreds of times in 10,000."""
    kind = rng.randrange(10)
    big = rng.random() < 0.02  # now and then a long one (~100k+ characters)
    if kind == 5 and rng.random() < 0.8:
        kind = 4  # thousands of boxes make ~200k characters: 2% of completions (still hundreds) suffice
    if kind == 0:
        body = _unicode(rng, rng.randint(0, 100_000 if big else 2000))
    elif kind == 1:
        body = rng.choice(["9" * rng.randint(1, 200_000 if big else 5000), f"1e{rng.randint(300, 10**6)}", "-0.0", "1/0",
                           "10^{10^{10^{10}}}", "2**2**2**2**2**2**2", f"{rng.random()}%", "1,000,000,000,000.5",
                           "0x" + "f" * 5000, "NaN", "-inf", "1" + "0" * 400 + "/3"])
    elif kind == 2:
        n = rng.randint(1, 20_000 if big else 2000)
        body = rng.choice(["{" * n + "}" * rng.randint(0, n), "\\frac{" * n, "\\sqrt{" * n + "2" + "}" * n,
                           "x^{" * min(n, 3000) + "2" + "}" * min(n, 3000), "(" * n, "[" * n, "\\left(" * n])
    elif kind == 3:
        body = "".join(rng.choice(LATEX) for _ in range(rng.randint(1, 600)))
    elif kind == 4:
        full = BOXES if rng.random() < 0.5 else _boxes(rng, rng.randint(1, 20))
        body = full[: rng.randint(0, len(full))] + rng.choice(["", "}", "]", '"', "'", ",", "]]]]"])
    elif kind == 5:
        body = _boxes(rng, rng.randint(1000, 5000 if big else 2000))
    elif kind == 6:
        body = rng.choice(["so ", "<answer>", "\\boxed{1}", "B) ", "yes no ", "[1, 2, 3, 4] "]) * rng.randint(
            1, 50_000 if big else 1000)
    elif kind == 7:
        body = rng.choice(["red cube", "42", "B", "(B) dog", "the answer is C", "\\frac{1}{2}", "0.5", "x = 1/2",
                           "Hello World 2024", "yes", "No.", "[10, 10, 50, 50]", BOXES, "forty-two", "\\boxed{0.5}"])
    elif kind == 8:
        body = "".join(rng.choice(["<answer>", "</answer>", "<think>", "</think>", "\\boxed{", "}", " ", "1"])
                       for _ in range(rng.randint(1, 500)))
    else:
        body = "\x00" * rng.randint(1, 100) + "<answer>" + _unicode(rng, 50) + "\ud800</answer>"
    wrap = rng.randrange(4)
    if wrap == 0:
        return body
    if wrap == 1:
        return f"<think>{_unicode(rng, 20)}</think><answer>{body}</answer>"
    if wrap == 2:
        return f"<answer>\\boxed{{{body}}}</answer>"
    return f"{body}<answer>{body[:1000]}</answer>"


def make_calls(n: int, seed: int = 0) -> list[RewardCall]:
    rng = random.Random(seed)
    calls = []
    for i in range(n):
        text = hostile(rng)
        for name, case in CASES.items():
            if case is None:  # accuracy: route through every task in turn
                task = ROUTED[i % len(ROUTED)]
                _, truth, params, extra = next(c for c in CASES.values() if c and c[0] == task)
                params = {k: v for k, v in params.items() if k in ("box_format",)}
            else:
                task, truth, params, extra = case
            calls.append(RewardCall(name, RewardInput(text, truth, task, progress=rng.random(), **extra), params))
    return calls


def test_every_builtin_verifier_is_covered():
    builtin = set(registered_rewards()) - {n for n in registered_rewards() if n.startswith("test_")} - MODEL_SCORED
    assert set(CASES) >= builtin


def run_fuzz(n: int, timeout_s: float):
    calls = make_calls(n)
    with RewardPool(2, timeout_s) as pool:
        outcomes = pool.run(calls)
        killed = pool.killed
    worst: dict[str, float] = defaultdict(float)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    failures = []
    for call, outcome in zip(calls, outcomes, strict=True):
        worst[call.name] = max(worst[call.name], outcome.seconds)
        counts[call.name][outcome.status] += 1
        if outcome.status == FAILED:
            failures.append((call.name, call.inp.completion[:200]))
        assert outcome.value is None or 0.0 <= outcome.value <= 1.0, (call.name, outcome)
    print(f"\n{len(calls)} calls on {n} completions; workers killed: {killed}")
    for name in sorted(worst):
        print(f"  {name:12s} worst {worst[name] * 1000:8.1f} ms  {dict(counts[name])}")
    assert not failures, failures[:5]
    timeouts = sum(c[TIMEOUT] for c in counts.values())
    return worst, timeouts, len(calls)


def test_fuzz_verifiers_quick():
    _, timeouts, _ = run_fuzz(N_QUICK, QUICK_TIMEOUT_S)
    assert timeouts == 0, f"{timeouts} calls ran past {QUICK_TIMEOUT_S} s: a verifier hangs on hostile input"


@pytest.mark.full_fuzz
def test_fuzz_verifiers():
    worst, timeouts, n_calls = run_fuzz(N_COMPLETIONS, TIMEOUT_S)
    assert max(worst.values()) <= TIMEOUT_S + HARD_GRACE_S + 0.5  # a kill lands within a poll of the limit
    assert timeouts <= 0.01 * n_calls, f"{timeouts} timeouts: the guards in the verifiers are not working"
