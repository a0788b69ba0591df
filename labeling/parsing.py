"""Read model answers: scores, verdicts, rewritten tasks, counterfactual instructions.

Models drift from the requested format. An answer is accepted when its meaning is
unambiguous (`ANSWER: 4`, `**Answer:** 4`, a bare `4`, `score 4/5`, or exactly one rubric
name); otherwise the parser says why it gave up, and the caller retries or records the
reason. Nothing here raises on model output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from common.scale import SCORE_NAMES

RUBRIC_NAMES = {name.lower(): score for score, name in SCORE_NAMES.items()}
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_ANSWER = re.compile(r"answer\W{0,4}?" + _NUMBER, re.IGNORECASE)
_SCORE_WORDS = re.compile(r"(?:score|rating|rate|grade|label)\D{0,12}?" + _NUMBER, re.IGNORECASE)
_OUT_OF_FIVE = re.compile(r"(?<![\d.])(\d)\s*(?:/|out of)\s*5\b", re.IGNORECASE)
_REFUSAL = re.compile(r"\b(i can(?:no|')t|i am unable|i'm unable|unable to|sorry|as an ai|i won't|cannot (?:help|assist|determine))\b", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedScore:
    score: int | None
    reason: str | None = None  # why `score` is None

    @property
    def ok(self) -> bool:
        return self.score is not None


def parse_score(text: str | None, low: int = 1, high: int = 5) -> ParsedScore:
    """The 1-5 score of an answer, or None and the reason."""
    if text is None or not text.strip():
        return ParsedScore(None, "empty answer")
    tagged = _ANSWER.findall(text)
    if tagged:
        return _checked_number(tagged[-1], low, high)
    stripped = text.strip().strip("*`'\". ")
    if re.fullmatch(_NUMBER, stripped):
        return _checked_number(stripped, low, high)
    candidates = {m for m in _OUT_OF_FIVE.findall(text)} | set(_SCORE_WORDS.findall(text))
    if candidates:
        if len(candidates) > 1:
            return ParsedScore(None, f"ambiguous: several scores {sorted(candidates)}")
        return _checked_number(candidates.pop(), low, high)
    named = {score for name, score in RUBRIC_NAMES.items() if name in text.lower()}
    if len(named) == 1:
        return _checked_number(str(named.pop()), low, high)
    if len(named) > 1:
        return ParsedScore(None, "ambiguous: several rubric levels named")
    if _REFUSAL.search(text):
        return ParsedScore(None, "refusal")
    return ParsedScore(None, "no score found")


def _checked_number(raw: str, low: int, high: int) -> ParsedScore:
    value = float(raw)
    if value != int(value):
        return ParsedScore(None, f"non-integer score {raw}")
    if not low <= value <= high:
        return ParsedScore(None, f"score {raw} out of range {low}-{high}")
    return ParsedScore(int(value))


@dataclass(frozen=True)
class ParsedVerdict:
    consistent: bool | None
    score: int | None
    reason: str | None = None


def parse_verdict(text: str | None) -> ParsedVerdict:
    """`VERDICT: CONSISTENT|INCONSISTENT` plus `ANSWER: k`; both are needed."""
    if text is None or not text.strip():
        return ParsedVerdict(None, None, "empty answer")
    verdicts = re.findall(r"verdict\W{0,4}(inconsistent|consistent)", text, re.IGNORECASE)
    if not verdicts:
        words = set(re.findall(r"\b(inconsistent|consistent)\b", text, re.IGNORECASE))
        verdicts = list(words) if len({w.lower() for w in words}) == 1 else []
    score = parse_score(text)
    if not verdicts:
        return ParsedVerdict(None, score.score, "no verdict found")
    return ParsedVerdict(verdicts[-1].lower() == "consistent", score.score, score.reason)


@dataclass(frozen=True)
class ParsedRewrite:
    instruction: str | None
    paraphrases: tuple[str, ...] = ()
    reason: str | None = None


def parse_rewrite(text: str | None) -> ParsedRewrite:
    if text is None or not text.strip():
        return ParsedRewrite(None, (), "empty answer")
    instructions = _tagged_lines(text, "instruction")
    paraphrases = tuple(_tagged_lines(text, "paraphrase"))
    if not instructions:
        return ParsedRewrite(None, paraphrases, "no INSTRUCTION line")
    return ParsedRewrite(instructions[0], paraphrases)


@dataclass(frozen=True)
class ParsedCounterfactuals:
    proposals: tuple[tuple[str, int], ...] = ()
    rejected: tuple[str, ...] = field(default_factory=tuple)  # one reason per unusable line
    reason: str | None = None


def parse_counterfactuals(text: str | None, max_score: int = 4) -> ParsedCounterfactuals:
    """`INSTRUCTION: ... | SCORE: k` lines; a line without a valid 1..max_score score is rejected."""
    if text is None or not text.strip():
        return ParsedCounterfactuals(reason="empty answer")
    proposals, rejected = [], []
    for line in text.splitlines():
        match = re.search(r"instruction\W{0,3}(.+?)\s*\|\s*(.*)$", line, re.IGNORECASE)
        if not match:
            continue
        instruction = match.group(1).strip().strip("\"'")
        score = parse_score(match.group(2), high=max_score)
        if not instruction or not score.ok:
            rejected.append(score.reason or "empty instruction")
            continue
        proposals.append((instruction, score.score))
    reason = None if proposals else ("no usable INSTRUCTION | SCORE lines" if not rejected else rejected[0])
    return ParsedCounterfactuals(tuple(proposals), tuple(rejected), reason)


def _tagged_lines(text: str, tag: str) -> list[str]:
    found = re.findall(rf"^\W*{tag}\W{{0,3}}:\s*(.+)$", text, re.IGNORECASE | re.MULTILINE)
    return [line.strip().strip("\"'*") for line in found if line.strip().strip("\"'*")]
