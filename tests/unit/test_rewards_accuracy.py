"""Answer verifiers (exact_text, number, choice) and the task router ``accuracy``."""

import pytest

from vlrl.rewards import RewardInput, get_reward
from vlrl.rewards.accuracy import (
    choice_from_text,
    choice_options,
    normalize_text,
    parse_choice,
    parse_number,
    read_numbers,
    route,
)


def run(name: str, completion: str, answer: str, task: str = "open", **params):
    return get_reward(name)(RewardInput(completion=completion, answer=answer, task=task), **params)


EXACT_CASES = [
    ("<answer>red</answer>", "red", 1.0),
    ("<answer> Red </answer>", "red", 1.0),  # case and spaces
    ("<answer>The red cube.</answer>", "red cube", 1.0),  # article and punctuation
    ("<answer>an   apple</answer>", "Apple", 1.0),  # collapsed whitespace, article 'an'
    ("<answer>red,blue</answer>", "red, blue", 1.0),  # punctuation becomes a space
    ("<answer>red</answer>", "blue", 0.0),
    ("<answer>dark red</answer>", "red", 0.0),  # no substring credit
    ("<answer>the</answer>", "the", 0.0),  # empty after normalisation never matches
    ("<answer></answer>", "red", 0.0),
    ("red", "red", 1.0),  # no tags: whole completion by default
    ("<think>blue?</think> red", "red", 0.0),  # whole completion includes the think text
    ("<answer>blue</answer> <answer>red</answer>", "red", 1.0),  # last answer wins
    ("<answer>theatre</answer>", "atre", 0.0),  # articles are dropped as words, not prefixes
    ("<answer>ＲＥＤ</answer>", "red", 1.0),  # full-width letters under NFKC
    ("<answer>ﬁsh</answer>", "fish", 1.0),  # the "fi" ligature under NFKC
    ("<answer>cafe\u0301</answer>", "café", 1.0),  # e + combining accent composes to é
    ("<answer>Straße</answer>", "STRASSE", 1.0),  # case folding, not just lower()
    ("<answer>red\tcube\n</answer>", "red cube", 1.0),  # any whitespace
    ("<answer>A red cube</answer>", "red cube", 1.0),
    ("<answer>red cube</answer>", "red cubes", 0.0),  # no stemming
    ("<answer>red; cube!</answer>", "red cube", 1.0),
]


@pytest.mark.parametrize("completion,answer,expected", EXACT_CASES)
def test_exact_text(completion, answer, expected):
    assert run("exact_text", completion, answer) == expected


def test_exact_text_without_fallback_needs_tags():
    assert run("exact_text", "red", "red", fallback_to_completion=False) == 0.0
    assert run("exact_text", "<answer>red</answer>", "red", fallback_to_completion=False) == 1.0


def test_normalize_text():
    assert normalize_text("  The  Quick, brown FOX!! ") == "quick brown fox"
    assert normalize_text("«Señor» — an émigré") == "señor émigré"  # unicode punctuation too


PARSE_NUMBER_CASES = [
    ("42", 42.0),
    ("-7", -7.0),
    ("+3.5", 3.5),
    (".5", 0.5),
    ("1,234,567", 1234567.0),
    ("50%", 50.0),
    ("3/4", 0.75),
    ("-3 / 4", -0.75),
    ("1e3", 1000.0),
    ("there are 3 cats and 4 dogs, so 7", 7.0),  # the last number
    ("3-4", 4.0),  # a hyphen between digits is not a sign
    ("x=-5", -5.0),
    ("1/0", None),  # a zero denominator is no number
    ("7 then 1/0", 7.0),  # ...so the number before it is read
    ("no digits here", None),
    ("", None),
    ("$5", 5.0),  # currency signs
    ("-$5", -5.0),
    ("\u22123", -3.0),  # U+2212 minus sign
    ("12 cm", 12.0),  # units after the number
    ("12 cm^2", 12.0),  # ...whose power is not a number
    ("12 m\u00b2", 12.0),  # nor a superscript one
    ("x_1 = 5", 5.0),  # nor a subscript
    ("1.5 \u00d7 10^3", 1500.0),  # a power of ten
    ("2 \\cdot 10^{-2}", 0.02),
    ("2^10", 1024.0),
    ("1e999", None),  # beyond float range: not read (and not computed)
    ("1e-999999999", None),
    ("\u00bd", 0.5),  # NFKC makes "1/2" with a fraction slash, read as "/"
    ("\uff15", 5.0),  # full-width digit
    ("50\\%", 50.0),
    ("seven", 7.0),  # number words when there are no digits
    ("Ninety-nine", 99.0),
    ("one of the 4 boxes", 4.0),  # with digits present, words are not read
]


@pytest.mark.parametrize("text,expected", PARSE_NUMBER_CASES)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


def test_parse_number_options():
    assert parse_number("50%", percent_as_fraction=True) == 0.5
    assert parse_number("50\\%", percent_as_fraction=True) == 0.5
    assert parse_number("seven", words=False) is None
    assert read_numbers("1/0, 2 and 3") == [None, 2.0, 3.0]  # unreadable numbers still count for single


NUMBER_CASES = [
    ("<answer>3</answer>", "3", {}, 1.0),
    ("<answer>3.0</answer>", "3", {}, 1.0),
    ("<answer> 1,000 </answer>", "1000", {}, 1.0),
    ("<answer>0.75</answer>", "3/4", {}, 1.0),
    ("<answer>4</answer>", "3", {}, 0.0),
    ("<answer>3.0000001</answer>", "3", {}, 1.0),  # within rel_tol 1e-6
    ("<answer>3.01</answer>", "3", {}, 0.0),
    ("<answer>3.01</answer>", "3", {"rel_tol": 0.01}, 1.0),
    ("<answer>0.05</answer>", "0", {"abs_tol": 0.1}, 1.0),  # rel_tol alone can never match 0
    ("<answer>0.05</answer>", "0", {}, 0.0),
    ("<answer>three</answer>", "3", {}, 1.0),  # number words by default...
    ("<answer>three</answer>", "3", {"words": False}, 0.0),  # ...unless words=False
    ("<answer>Three apples</answer>", "3", {}, 1.0),
    ("<answer>twenty-one</answer>", "21", {}, 1.0),
    ("<answer>twenty one</answer>", "1", {}, 0.0),  # a compound is not its last word
    ("<answer>3</answer>", "three", {}, 1.0),  # the ground truth may be a word too
    ("<answer>one or two</answer>", "2", {"single": True}, 0.0),  # single counts words as well
    ("<answer>12 cm</answer>", "12", {}, 1.0),
    ("<answer>$5</answer>", "5", {}, 1.0),
    ("<answer>3 apples</answer>", "3", {}, 1.0),
    ("<answer>\u22124</answer>", "-4", {}, 1.0),
    ("<answer>1,234,567</answer>", "1234567", {}, 1.0),
    ("<answer>50%</answer>", "50", {}, 1.0),  # by default a percent sign is ignored...
    ("<answer>50%</answer>", "0.5", {}, 0.0),
    ("<answer>50%</answer>", "0.5", {"percent_as_fraction": True}, 1.0),  # ...or divides by 100
    ("<answer>0.5</answer>", "50%", {"percent_as_fraction": True}, 1.0),  # on both sides
    ("<answer>50 percent</answer>", "0.5", {"percent_as_fraction": True}, 1.0),
    ("<answer>50%</answer>", "50", {"percent_as_fraction": True}, 0.0),
    ("<answer>1.5e3</answer>", "1500", {}, 1.0),
    ("<answer>3 \\times 10^{8} m/s</answer>", "3e8", {}, 1.0),
    ("<answer>1e999</answer>", "1", {}, 0.0),
    ("<answer>-2</answer>", "2", {}, 0.0),  # the sign matters
    ("I count 5 shapes", "5", {}, 1.0),  # fallback to the completion
    ("I count 5 shapes", "5", {"fallback_to_completion": False}, 0.0),
    ("<answer> 1 3 4 </answer>", "4", {}, 1.0),  # the last number counts by default ("3 + 1 = 4")
    ("<answer> 1 3 4 </answer>", "4", {"single": True}, 0.0),  # listing candidates earns nothing
    ("<answer> 4 shapes </answer>", "4", {"single": True}, 1.0),
]


@pytest.mark.parametrize("completion,answer,params,expected", NUMBER_CASES)
def test_number(completion, answer, params, expected):
    assert run("number", completion, answer, **params) == expected


@pytest.mark.parametrize("truth", ["unknown", "x^2+1", "12 cm", "3 + 4", "1 or 2", ""])
def test_number_truth_that_is_no_number_does_not_apply(truth):
    # "x^2+1" ends in 1: reading its last number would give full marks to any output ending in 1.
    assert run("number", "<answer>1</answer>", truth, task="count") is None
    assert run("number", "<answer>2</answer>", truth, task="count") is None


@pytest.mark.parametrize("truth", ["$4$", "\\boxed{4}", "4.", " 4 ", "four", "4e0"])
def test_number_truth_wrapped_number_still_applies(truth):
    assert run("number", "<answer>4</answer>", truth, task="count") == 1.0


def test_mixer_counts_rows_the_number_term_does_not_apply_to():
    from vlrl.config import RewardConfig, RewardTerm
    from vlrl.rewards.base import RewardInput
    from vlrl.rewards.mixer import RewardMixer

    mixer = RewardMixer(RewardConfig(terms=[RewardTerm(name="number", weight=1.0)]))
    scores = mixer.score([RewardInput("<answer>1</answer>", "x^2+1", "count"),
                          RewardInput("<answer>1</answer>", "1", "count")])
    assert scores.not_applicable == {"number": 1}
    assert scores.total.tolist() == [0.0, 1.0]
    assert scores.metrics()["reward/not_applicable"] == 1.0


PARSE_CHOICE_CASES = [
    ("B", "B"),
    ("b", "B"),  # a lone lowercase letter
    ("(B)", "B"),
    ("[C]", "C"),
    ("B.", "B"),
    ("B) a red cube", "B"),
    ("D. the blue one", "D"),
    ("the answer is B", "B"),
    ("Answer: (C)", "C"),
    ("Option A is wrong; the answer is C.", "C"),  # the last phrase wins
    ("I pick (D) because it is round", "D"),
    ("A cat", None),  # a capital word is not a choice
    ("option D", "D"),
    ("B)", "B"),
    ("Z", "Z"),  # any letter A-Z
    ("The correct option is (B), the cube", "B"),
    ("OPTIONS ARE HARD", None),  # "option" must be a whole word, else this read "S"
    ("I think so", None),
    ("", None),
]


@pytest.mark.parametrize("text,expected", PARSE_CHOICE_CASES)
def test_parse_choice(text, expected):
    assert parse_choice(text) == expected


CHOICE_CASES = [
    ("<answer>B</answer>", "B", 1.0),
    ("<answer>(b)</answer>", "B", 1.0),  # a lone letter may be lower case and bracketed
    ("<answer>see (b)</answer>", "B", 0.0),  # ...but inside prose only capitals count
    ("<answer> b </answer>", "B", 1.0),
    ("<answer>B) the cube</answer>", "B", 1.0),
    ("<answer>C</answer>", "B", 0.0),
    ("<answer>the answer is B</answer>", "(B)", 1.0),  # ground truth may be bracketed too
    ("the answer is B", "B", 1.0),  # fallback to the completion
    ("<answer>maybe</answer>", "B", 0.0),
    ("<answer></answer>", "B", 0.0),
]


@pytest.mark.parametrize("completion,answer,expected", CHOICE_CASES)
def test_choice(completion, answer, expected):
    assert run("choice", completion, answer) == expected


def test_choice_bad_ground_truth_raises():
    with pytest.raises(ValueError, match="choice letter"):
        run("choice", "<answer>B</answer>", "a cat")


SHAPES = ["red cube", "blue ball"]
CHOICE_TEXT_CASES = [
    # (completion, ground truth, options param, row meta, expected)
    ("<answer>blue ball</answer>", "B", SHAPES, {}, 1.0),  # the answer is an option's text
    ("<answer>The Blue Ball.</answer>", "B", SHAPES, {}, 1.0),  # normalised
    ("<answer>red cube</answer>", "B", SHAPES, {}, 0.0),
    ("<answer>red cube or blue ball</answer>", "A", SHAPES, {}, 0.0),  # naming several options is no answer
    ("<answer>I pick the blue ball, it rolls</answer>", "B", SHAPES, {}, 1.0),  # an option's text in prose
    ("<answer>blue ball</answer>", "blue ball", SHAPES, {}, 1.0),  # the ground truth is an option's text
    ("<answer>B</answer>", "Blue Ball", SHAPES, {}, 1.0),
    ("<answer>A</answer>", "blue ball", SHAPES, {}, 0.0),
    ("<answer>(A) blue ball</answer>", "A", SHAPES, {}, 1.0),  # a letter outranks the text after it
    ("<answer>dog</answer>", "C", None, {"options": ["cat", "bird", "dog"]}, 1.0),  # options from meta
    ("<answer>dog</answer>", "D", None, {"choices": {"C": "cat", "D": "dog"}}, 1.0),  # a letter -> text map
    ("<answer>dog</answer>", "B", None, {"options": '["cat", "dog"]'}, 1.0),  # JSON text
    ("<answer>dog</answer>", "A", ["dog", "cat"], {"options": ["cat", "dog"]}, 1.0),  # the param wins
    ("<answer>cat</answer>", "A", ["A. cat", "B. dog"], {}, 1.0),  # an option's own label is dropped
    ("<answer>dark red</answer>", "B", ["red", "dark red"], {}, 1.0),  # "red" only inside "dark red"
    ("<answer>red</answer>", "A", ["red", "dark red"], {}, 1.0),
    ("<answer>dark red, no, red</answer>", "A", ["red", "dark red"], {}, 0.0),  # both named on their own
    ("<answer>dog</answer>", "B", None, {}, 0.0),  # no options: text cannot be a choice
    ("<answer>the answer is E</answer>", "E", None, {}, 1.0),
]


@pytest.mark.parametrize("completion,answer,options,meta,expected", CHOICE_TEXT_CASES)
def test_choice_with_option_texts(completion, answer, options, meta, expected):
    inp = RewardInput(completion=completion, answer=answer, task="mcq", meta=meta)
    assert get_reward("choice")(inp, options=options) == expected


@pytest.mark.parametrize(
    "answer,options,match",
    [
        ("fish", ["cat", "dog"], "nor an option"),  # a ground-truth text that is no option
        ("A", 3, "options must be"),
        ("A", [str(i) for i in range(27)], "options must be"),  # more options than letters
        ("A", {"AB": "cat"}, "not a letter"),
        ("A", "not json", "Expecting value"),
    ],
)
def test_choice_bad_options_raise(answer, options, match):
    with pytest.raises(ValueError, match=match):
        run("choice", "<answer>A</answer>", answer, options=options)


def test_choice_options():
    assert choice_options({"(a)": "Cat", "b": "the Dog"}, None) == {"A": "cat", "B": "dog"}
    assert choice_options(None, {"choices": ["x"]}) == {"A": "x"}
    assert choice_options(None, {"options": None, "choices": ["x"]}) == {"A": "x"}  # a null falls through
    assert choice_options(None, None) == {}
    assert choice_from_text("cat", {"A": "cat", "B": "cat"}) == "A"  # a repeated option counts once


ROUTE_CASES = [
    ("count", None, "number"),
    ("math", None, "math"),
    ("number", None, "number"),
    ("mcq", None, "choice"),
    ("grounding", None, "iou"),
    ("ocr", None, "ocr"),
    ("yes_no", None, "yes_no"),
    ("yesno", None, "yes_no"),
    ("colour", None, "exact_text"),
    ("detection", None, "detection"),
    ("count", {"count": "exact_text"}, "exact_text"),  # override
    ("ocr", {"ocr": "number"}, "number"),  # extension
]


@pytest.mark.parametrize("task,routes,expected", ROUTE_CASES)
def test_route(task, routes, expected):
    assert route(task, routes) == expected


ACCURACY_CASES = [
    # (completion, answer, task, params, expected)
    ("<answer>3.0</answer>", "3", "count", {}, 1.0),  # number: 3.0 == 3
    ("<answer>3.0</answer>", "3", "colour", {}, 0.0),  # exact_text: "3 0" != "3"
    ("<answer>(B)</answer>", "B", "mcq", {}, 1.0),
    ("<answer>[0,0,10,10]</answer>", "[5,5,15,15]", "grounding", {}, pytest.approx(1 / 7)),
    ("<answer>[0,0,10,10]</answer>", "[5,5,15,15]", "grounding", {"threshold": 0.1}, 1.0),
    ("<answer>3.1</answer>", "3", "count", {"rel_tol": 0.05}, 1.0),  # forwarded to number only
    ("<answer>red</answer>", "red", "colour", {"rel_tol": 0.05}, 1.0),  # ...and dropped for exact_text
    ("<answer>3.0</answer>", "3", "colour", {"routes": {"colour": "number"}}, 1.0),
    (r"<answer>\frac{6}{2}</answer>", "3", "math", {}, 1.0),  # math: equivalence, not the last number
    (r"<answer>\frac{6}{2}</answer>", "3", "math", {"rel_tol": 0.05}, 1.0),  # number params are dropped
    ("<answer>stop sigm</answer>", "stop sign", "ocr", {}, pytest.approx(1 - 1 / 9)),
    ("<answer>Yes, it is.</answer>", "yes", "yes_no", {}, 1.0),
    ("<answer>No</answer>", "yes", "yesno", {}, 0.0),
    ("<answer>dog</answer>", "B", "mcq", {"options": ["cat", "dog"]}, 1.0),  # options reach choice
]


@pytest.mark.parametrize("completion,answer,task,params,expected", ACCURACY_CASES)
def test_accuracy_routes_by_task(completion, answer, task, params, expected):
    assert run("accuracy", completion, answer, task, **params) == expected


def test_accuracy_check_params():
    check = get_reward("accuracy").check_params
    check({"rel_tol": 0.1, "box_format": "rel1000", "routes": {"ocr": "number"}})
    check({"source": "boxed", "true_false": False, "percent_as_fraction": True, "options": ["a", "b"]})
    with pytest.raises(ValueError, match="rel_toll"):
        check({"rel_toll": 0.1})
    with pytest.raises(ValueError, match="back to 'accuracy'"):
        check({"routes": {"ocr": "accuracy"}})
    with pytest.raises(ValueError, match="unknown reward"):
        check({"routes": {"ocr": "no_such_reward"}})


def test_accuracy_refuses_to_route_to_itself():
    with pytest.raises(ValueError, match="back to 'accuracy'"):
        run("accuracy", "x", "x", "ocr", routes={"ocr": "accuracy"})


ONE_OF_CASES = [
    ("<answer> blue </answer>", ["red", "blue"], 1.0),  # a valid answer, right or wrong
    ("<answer> Blue. </answer>", ["red", "blue"], 1.0),  # normalised like exact_text
    ("<answer> purple </answer>", ["red", "blue"], 0.0),
    ("<answer> red blue </answer>", ["red", "blue"], 0.0),  # two answers are not one of the options
    ("<answer> 3 </answer>", ["1", "2", "3", "4"], 1.0),
    ("3", ["1", "2", "3", "4"], 1.0),  # fallback to the completion
    ("<answer></answer>", ["red"], 0.0),
]


@pytest.mark.parametrize("completion,options,expected", ONE_OF_CASES)
def test_one_of(completion, options, expected):
    assert run("one_of", completion, "unused", options=options) == expected


def test_one_of_without_fallback_needs_tags():
    assert run("one_of", "3", "unused", options=["3"], fallback_to_completion=False) == 0.0
