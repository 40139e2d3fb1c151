"""Answer verifiers (exact_text, number, choice) and the task router ``accuracy``."""

import pytest

from vlrl.rewards import RewardInput, get_reward
from vlrl.rewards.accuracy import normalize_text, parse_choice, parse_number, route


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
]


@pytest.mark.parametrize("text,expected", PARSE_NUMBER_CASES)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


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
    ("<answer>three</answer>", "3", {}, 0.0),  # unparseable output
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


def test_number_bad_ground_truth_raises():
    with pytest.raises(ValueError, match="ground truth"):
        run("number", "<answer>3</answer>", "unknown")


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


ROUTE_CASES = [
    ("count", None, "number"),
    ("math", None, "number"),
    ("number", None, "number"),
    ("mcq", None, "choice"),
    ("grounding", None, "iou"),
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
    ("<answer>3.1</answer>", "3", "math", {"rel_tol": 0.05}, 1.0),  # forwarded to number only
    ("<answer>red</answer>", "red", "colour", {"rel_tol": 0.05}, 1.0),  # ...and dropped for exact_text
    ("<answer>3.0</answer>", "3", "colour", {"routes": {"colour": "number"}}, 1.0),
]


@pytest.mark.parametrize("completion,answer,task,params,expected", ACCURACY_CASES)
def test_accuracy_routes_by_task(completion, answer, task, params, expected):
    assert run("accuracy", completion, answer, task, **params) == expected


def test_accuracy_check_params():
    check = get_reward("accuracy").check_params
    check({"rel_tol": 0.1, "box_format": "rel1000", "routes": {"ocr": "number"}})
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
