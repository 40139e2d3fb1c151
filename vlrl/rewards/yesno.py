"""The ``yes_no`` reward: the polarity of a yes/no answer.

Words read, as whole words in any case: "yes" and "no"; with ``true_false`` (default True) also "true" and
"false" as synonyms of yes and no, for true-or-false questions whose ground truth is written that way. A
word right after "not" or "n't" flips ("not true" is no). "correct"/"incorrect" and "right"/"wrong" are
*not* read: they occur in answers outside the verdict ("the correct answer is no").

The answer is the one polarity of all the words read. A region with words of both polarities scores 0.0,
even "Yes, there is no cat": a policy must not be paid for hedging ("yes or no"), and a justification is
not reliably told apart from a hedge, so this reward teaches short answers. "Yes, because …" counts as yes.
"""

from __future__ import annotations

import re
import unicodedata

from vlrl.rewards.base import RewardInput, answer_region, register_reward

_POLARITY = {"yes": True, "no": False, "true": True, "false": False}
_YES_NO_ONLY = frozenset({"yes", "no"})
_WORD_RE = re.compile(r"[^\W\d_]+")  # runs of letters: "isn't" splits into "isn" and "t"
_NEGATIONS = frozenset({"not", "t"})


def read_yes_no(text: str, true_false: bool = True) -> bool | None:
    """True for yes, False for no, None when ``text`` holds neither or both (see the module doc).

    >>> read_yes_no("Yes, because the cube is red."), read_yes_no("It is not true"), read_yes_no("yes or no")
    (True, False, None)
    """
    words = _WORD_RE.findall(unicodedata.normalize("NFKC", text).casefold())
    found = set()
    for i, word in enumerate(words):
        if word in _POLARITY and (true_false or word in _YES_NO_ONLY):
            negated = i > 0 and words[i - 1] in _NEGATIONS
            found.add(_POLARITY[word] != negated)
    return found.pop() if len(found) == 1 else None


@register_reward("yes_no")
def yes_no(inp: RewardInput, true_false: bool = True, fallback_to_completion: bool = True) -> float:
    """1.0 when the answer region's polarity (:func:`read_yes_no`) is the ground truth's. A ground truth
    without exactly one polarity raises ValueError.

    >>> yes_no(RewardInput("<answer>No.</answer>", "false", "yes_no"))
    1.0
    """
    truth = read_yes_no(str(inp.answer), true_false)
    if truth is None:
        raise ValueError(f"yes_no: ground truth {inp.answer!r} is not a yes/no answer")
    region = answer_region(inp.completion, fallback_to_completion)
    pred = read_yes_no(region, true_false) if region is not None else None
    return 1.0 if pred is truth else 0.0
