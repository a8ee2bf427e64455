"""Answer-level metrics: faithfulness, answer relevance, citation precision / recall, exact match
and token F1, and the calibration of judge-based scores against human labels.

An answer is split into claims (sentences, :func:`split_claims`); the markers ``[n]`` in a claim
cite the ``n``-th context it was given (1-based, as :mod:`rag.pipeline.citations` resolves them).

* faithfulness (ragas, Es et al. 2024): share of claims the judge finds supported by the
  context they cite (by every context when the claim cites none);
* answer relevance: the judge's P(the answer addresses the question) (ragas asks the same with
  generated questions; here one label-probability judgment);
* citation recall / precision (ALCE, Gao et al. 2023): a claim is recalled when it cites at least
  one context and the concatenation of its cited contexts supports it; a citation is precise when
  its claim is recalled and it either supports the claim alone or is needed (the other citations
  do not support the claim without it). Recall averages over claims, precision over citations;
* exact match / token F1 (SQuAD, Rajpurkar et al. 2016) against reference answers, when given.

Judge-based scores are *uncalibrated* unless human labels are given: then each judged metric
reports its agreement with the labels (accuracy at the threshold, Wilson CI) and an ARES-style
prediction-powered CI of the system's mean (:mod:`evals.ppi`).

>>> exact_match("The Eiffel tower.", ["eiffel tower"]), token_f1("big red dog", ["red dog"])
(1.0, 0.8)
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag.core.errors import ConfigError
from rag.core.types import Answer
from rag.pipeline.citations import parse_markers
from rag.pipeline.judges import SupportJudge

_SENT = re.compile(r"(?<=[.!?])\s+(?=\S)")
_MARK = re.compile(r"\s*\[[0-9][0-9,;\s\-–]*\]")
JUDGED = ("faithfulness", "answer_relevance", "citation_recall", "citation_precision")


def split_claims(text: str) -> list[str]:
    """Sentences of ``text`` (markers kept), empty ones dropped.

    >>> split_claims("Paris is in France [1]. It is large [2].")
    ['Paris is in France [1].', 'It is large [2].']
    """
    return [s.strip() for s in _SENT.split(text.strip()) if _MARK.sub("", s).strip(" .!?")]


def strip_markers(text: str) -> str:
    return _MARK.sub("", text).strip()


def _normalise(text: str) -> list[str]:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised reference."""
    pred = _normalise(strip_markers(prediction))
    return float(any(pred == _normalise(r) for r in references))


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """Max over references of the bag-of-tokens F1 ``2PR / (P + R)``."""
    pred = _normalise(strip_markers(prediction))
    best = 0.0
    for ref in references:
        gold = _normalise(ref)
        if not pred or not gold:
            best = max(best, float(pred == gold))
            continue
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


class _SupportCache:
    """Collects (context, statement) pairs, then asks the judge once for all unique ones."""

    def __init__(self) -> None:
        self.pairs: dict[tuple[str, str], float] = {}

    def want(self, context: str, statement: str) -> tuple[str, str]:
        key = (context, statement)
        self.pairs.setdefault(key, float("nan"))
        return key

    def run(self, judge: SupportJudge) -> None:
        keys = list(self.pairs)
        if keys:
            probs = judge.p_support([k[0] for k in keys], [k[1] for k in keys])
            self.pairs = dict(zip(keys, (float(p) for p in probs), strict=True))


@dataclass
class _Claim:
    text: str
    cited: list[int]
    joint: tuple[str, str]
    singles: list[tuple[str, str]] = field(default_factory=list)
    leave_one_out: list[tuple[str, str] | None] = field(default_factory=list)


def _plan(answer: Answer, cache: _SupportCache) -> list[_Claim]:
    ctx = [h.document.full_text for h in answer.contexts]
    claims = []
    for sent in split_claims(answer.text):
        statement = strip_markers(sent)
        cited = [n for n in parse_markers(sent) if 1 <= n <= len(ctx)]
        joint = cache.want("\n".join(ctx[n - 1] for n in (cited or range(1, len(ctx) + 1))),
                           statement)
        c = _Claim(statement, cited, joint)
        if len(cited) > 1:
            for n in cited:
                c.singles.append(cache.want(ctx[n - 1], statement))
                rest = "\n".join(ctx[m - 1] for m in cited if m != n)
                c.leave_one_out.append(cache.want(rest, statement))
        elif cited:
            c.singles.append(joint)
            c.leave_one_out.append(None)
        claims.append(c)
    return claims


def _score_claims(claims: list[_Claim], p: Mapping[tuple[str, str], float], t: float) -> dict:
    if not claims:
        return {}
    ok = [p[c.joint] >= t for c in claims]
    recalled = [bool(c.cited) and s for c, s in zip(claims, ok, strict=True)]
    precise, n_cites = 0, 0
    for c, rec in zip(claims, recalled, strict=True):
        n_cites += len(c.cited)
        if not rec:
            continue
        for single, rest in zip(c.singles, c.leave_one_out, strict=True):
            needed = rest is None or p[rest] < t
            precise += p[single] >= t or needed
    out = {"faithfulness": float(np.mean(ok)), "citation_recall": float(np.mean(recalled))}
    if n_cites:
        out["citation_precision"] = precise / n_cites
    return out


def answer_metrics(
    answers: Sequence[Answer],
    judge: SupportJudge | None = None,
    references: Mapping[str, Sequence[str]] | None = None,
    threshold: float = 0.5,
) -> dict[str, dict[str, float]]:
    """Per-answer metrics ``{query id: {metric: value}}``. Judged metrics need ``judge``;
    EM / F1 need ``references`` (query id -> reference answers)."""
    ids = [a.query.id for a in answers]
    if len(set(ids)) != len(ids):
        raise ConfigError("answers must have distinct query ids")
    out: dict[str, dict[str, float]] = {q: {} for q in ids}
    if judge is not None:
        cache = _SupportCache()
        plans = [_plan(a, cache) for a in answers]
        cache.run(judge)
        rel = judge.p_relevant([a.query.text for a in answers],
                               [strip_markers(a.text) for a in answers])
        for a, plan, r in zip(answers, plans, rel, strict=True):
            out[a.query.id].update(_score_claims(plan, cache.pairs, threshold))
            out[a.query.id]["answer_relevance"] = float(r)
    for a in answers:
        refs = (references or {}).get(a.query.id)
        if refs:
            out[a.query.id]["exact_match"] = exact_match(a.text, refs)
            out[a.query.id]["token_f1"] = token_f1(a.text, refs)
    return out


def judge_agreement(
    scores: Mapping[str, float], labels: Mapping[str, float], threshold: float = 0.5
) -> dict[str, Any]:
    """Agreement of judge scores with binary human labels on the ids both have: accuracy of
    ``score >= threshold`` vs ``label >= 0.5`` with its Wilson 95% CI."""
    from evals.stats import wilson_ci

    common = sorted(set(scores) & set(labels))
    if not common:
        raise ConfigError("no id has both a judge score and a human label")
    hits = sum((scores[q] >= threshold) == (labels[q] >= 0.5) for q in common)
    lo, hi = wilson_ci(hits, len(common))
    return {"n": len(common), "accuracy": hits / len(common), "wilson95": [lo, hi]}
