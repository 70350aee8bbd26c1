"""Statistics over held-out questions: confidence intervals and paired tests.

Every accuracy in the report is a mean of per-question scores (1 right, 0 wrong; a fraction
where a point averages several runs of a question). Questions are the unit of resampling:

    bootstrap_ci(scores)         95% percentile interval of the mean, from resampled questions
    paired_bootstrap(a, b)       the mean difference a - b over the same questions, its 95%
                                 interval and a two-sided p-value (null: no difference)
    mcnemar_exact(a, b)          the exact McNemar p-value on right/wrong pairs (0/1 scores)

All resampling is seeded, so a report is reproducible to the digit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

RESAMPLES = 2000
SEED = 0


@dataclass(frozen=True)
class PairedTest:
    n: int  # questions paired (summed over strata)
    diff: float  # mean of a - b (averaged over strata, each weighted equally)
    ci_low: float
    ci_high: float
    p_value: float  # paired bootstrap, two-sided
    mcnemar_p: float | None = None  # exact McNemar, where every score is 0 or 1 (one stratum)


def bootstrap_ci(scores: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of `scores` over `resamples` resamples of the questions."""
    import numpy as np

    x = np.asarray(scores, dtype=float)
    if x.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED,
                     level: float = 0.95) -> PairedTest:
    """a - b over the same questions (a[i] and b[i] score question i)."""
    test = paired_bootstrap_strata([(a, b)], resamples, seed, level)
    binary = all(v in (0, 1) for v in (*a, *b))
    return PairedTest(test.n, test.diff, test.ci_low, test.ci_high, test.p_value,
                      mcnemar_exact(a, b) if binary else None)


def paired_bootstrap_strata(strata: Sequence[tuple[Sequence[float], Sequence[float]]], resamples: int = RESAMPLES,
                            seed: int = SEED, level: float = 0.95) -> PairedTest:
    """The mean over strata (e.g. seeds, each with its own held-out questions) of the paired
    mean difference; questions are resampled within their stratum. The p-value is the share of
    resampled differences, shifted to the null, at least as far from 0 as the observed one."""
    import numpy as np

    rng = np.random.default_rng(seed)
    observed, resampled, n = 0.0, np.zeros(resamples), 0
    for a, b in strata:
        if len(a) != len(b):
            raise ValueError(f"paired test: {len(a)} scores against {len(b)}; both sides must score the same questions")
        if not len(a):
            raise ValueError("paired test: a stratum has no questions")
        d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
        observed += d.mean() / len(strata)
        resampled += d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1) / len(strata)
        n += d.size
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    if observed == 0:
        p = 1.0
    else:
        extreme = np.abs(resampled - observed) >= abs(observed) - 1e-12
        p = float((1 + extreme.sum()) / (resamples + 1))
    return PairedTest(n, float(observed), float(low), float(high), p)


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided exact McNemar test: of the questions exactly one side gets right, is the split
    further from even than chance (Binomial(n, 1/2)) allows?"""
    if len(a) != len(b):
        raise ValueError(f"mcnemar_exact: {len(a)} scores against {len(b)}")
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties count half); 0.5 when one class is absent."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return 0.5
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1
        i = j + 1
    pos_rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return (pos_rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
