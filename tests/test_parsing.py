"""Model answers in every shape: 30+ malformed ones parse when unambiguous, else give a reason."""

import pytest

from labeling.parsing import parse_counterfactuals, parse_rewrite, parse_score, parse_verdict

UNAMBIGUOUS = [
    ("ANSWER: 4", 4),
    ("answer:3", 3),
    ("ANSWER : 5", 5),
    ("**Answer:** 2", 2),
    ("Answer - 1", 1),
    ("The robot grasped the puck.\nANSWER: 3", 3),
    ("ANSWER: 2\nActually, on reflection, ANSWER: 4", 4),
    ("4", 4),
    (" 5. ", 5),
    ("`3`", 3),
    ("ANSWER: 4.0", 4),
    ("I would rate this 3 out of 5.", 3),
    ("Score: 2", 2),
    ("My score is 4/5 because the puck is almost at the goal.", 4),
    ("This looks like Near Completion.", 4),
    ("perfect completion", 5),
    ("Rating = 1", 1),
    ("ANSWER:5<|im_end|>", 5),
]

MALFORMED = [
    ("", "empty answer"),
    ("   \n", "empty answer"),
    (None, "empty answer"),
    ("ANSWER: 7", "out of range"),
    ("ANSWER: 0", "out of range"),
    ("ANSWER: -2", "out of range"),
    ("ANSWER: 3.5", "non-integer"),
    ("9", "out of range"),
    ("The arm moves toward the puck.", "no score found"),
    ("I'm sorry, I cannot determine the progress from these images.", "refusal"),
    ("As an AI, I can't judge robots.", "refusal"),
    ("Either 2 out of 5 or 3 out of 5.", "ambiguous"),
    ("score 2, or maybe score 4", "ambiguous"),
    ("It is between Partial Completion and Near Completion.", "ambiguous"),
    ("ANSWER: four", "no score found"),
    ("answer: ???", "no score found"),
    ("ANSWER:", "no score found"),
    ("Rating: 11", "out of range"),
    ("<|im_end|>", "no score found"),
    ("!!!!!!", "no score found"),
    ("12345", "out of range"),
    ("ANSWER: 6/5", "out of range"),
    ("score: 0.5", "non-integer"),
]


@pytest.mark.parametrize("text, score", UNAMBIGUOUS)
def test_unambiguous_answers_parse(text, score):
    parsed = parse_score(text)
    assert parsed.ok and parsed.score == score, parsed


@pytest.mark.parametrize("text, reason", MALFORMED)
def test_malformed_answers_give_a_reason(text, reason):
    parsed = parse_score(text)
    assert not parsed.ok and reason in parsed.reason, parsed


def test_there_are_at_least_thirty_malformed_cases():
    assert len(MALFORMED) + len(UNAMBIGUOUS) - 4 >= 30  # the 4 canonical answers excluded


def test_verdicts():
    assert parse_verdict("VERDICT: CONSISTENT\nANSWER: 3") == parse_verdict("verdict: consistent answer 3")
    verdict = parse_verdict("VERDICT: INCONSISTENT\nANSWER: 2")
    assert verdict.consistent is False and verdict.score == 2
    assert parse_verdict("The label is consistent. ANSWER: 4").consistent is True
    assert parse_verdict("ANSWER: 4").reason == "no verdict found"
    assert parse_verdict("consistent or inconsistent?").consistent is None
    assert parse_verdict("").reason == "empty answer"


def test_rewrites():
    parsed = parse_rewrite("INSTRUCTION: Pick up the puck and place it on the goal.\nPARAPHRASE: Move the puck to the goal.")
    assert parsed.instruction == "Pick up the puck and place it on the goal."
    assert parsed.paraphrases == ("Move the puck to the goal.",)
    assert parse_rewrite("Sure! Here you go.").reason == "no INSTRUCTION line"


def test_counterfactuals_reject_bad_lines_and_keep_good_ones():
    text = (
        "INSTRUCTION: Push the puck off the table | SCORE: 1\n"
        "INSTRUCTION: Place the puck at the goal | SCORE: 5\n"  # a perfect score is not a negative
        "INSTRUCTION: Lift the puck above the goal and hold it | SCORE: 3\n"
        "random chatter\n"
        "INSTRUCTION:  | SCORE: 2\n"
    )
    parsed = parse_counterfactuals(text)
    assert parsed.proposals == (("Push the puck off the table", 1), ("Lift the puck above the goal and hold it", 3))
    assert len(parsed.rejected) == 2
    assert parse_counterfactuals("nothing useful").reason == "no usable INSTRUCTION | SCORE lines"
