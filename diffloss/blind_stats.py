"""The statistics of a blind A/B judgement: the sign test and how many judgements a preference needs.

Pure functions of counts, standard library only, so the tally command, the report and the studio's blind mode
share one definition and a reader can check them by hand.
"""

from __future__ import annotations

import math
from statistics import NormalDist

DEFAULT_PREFERENCE = 0.7  # "70:30": a preference a judge would call clear
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test p-value (ties dropped before calling): how likely a split at least this uneven is
    when both sides are equally good. Under p = 1/2 the binomial is symmetric, so the two-sided p is twice the
    smaller tail, capped at 1 (equal to scipy.stats.binomtest(wins, n, 0.5).pvalue)."""
    if wins < 0 or losses < 0:
        raise ValueError(f"counts must be >= 0, got wins={wins}, losses={losses}")
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def judgements_needed(preference: float = DEFAULT_PREFERENCE, alpha: float = DEFAULT_ALPHA,
                      power: float = DEFAULT_POWER) -> int:
    """Decisive (non-tie) judgements needed to detect a ``preference`` : 1 - ``preference`` split with a two-sided
    test at ``alpha`` with probability ``power``.

    The normal-approximation sample size of a one-sample test of a proportion, p0 = 1/2 against p1, with the
    null's variance in the critical value and the alternative's in the power term (the form in e.g. Lachin 1981,
    "Introduction to sample size determination and power analysis for clinical trials", Controlled Clinical
    Trials 2)::

        n = ((z_{1-alpha/2} sqrt(p0 q0) + z_{power} sqrt(p1 q1)) / (p1 - p0))^2, rounded up

    70:30 at alpha 0.05, power 0.8: ((1.960 * 0.5 + 0.842 * 0.458) / 0.2)^2 = 46.6 -> 47 (the shortcut with p1's
    variance in both terms gives 42). The exact sign test's power at 47 is 0.78, close to but not exactly 0.8
    (:func:`sign_test_power`). Ties carry no information: :func:`with_ties` scales n up for them.
    """
    if not 0.5 < preference < 1:
        raise ValueError(f"preference must be between 0.5 and 1 (0.7 means 70:30), got {preference}")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be between 0 and 1, got alpha={alpha}, power={power}")
    z = NormalDist()
    p0, p1 = 0.5, preference
    root = (z.inv_cdf(1 - alpha / 2) * math.sqrt(p0 * (1 - p0)) + z.inv_cdf(power) * math.sqrt(p1 * (1 - p1)))
    return math.ceil((root / (p1 - p0)) ** 2 - 1e-9)


def with_ties(decisive: int, tie_share: float) -> int:
    """Judgements to collect so that ``decisive`` remain after ties (a share ``tie_share`` of them) are dropped."""
    if not 0 <= tie_share < 1:
        raise ValueError(f"tie share must be in [0, 1), got {tie_share}")
    return math.ceil(decisive / (1 - tie_share) - 1e-9)


def sign_test_power(n: int, preference: float = DEFAULT_PREFERENCE, alpha: float = DEFAULT_ALPHA) -> float:
    """The exact sign test's power with ``n`` decisive judgements when the true split is ``preference``: the
    probability that :func:`sign_test` gives p <= ``alpha``."""
    if n < 1:
        return 0.0
    return sum(math.comb(n, k) * preference**k * (1 - preference) ** (n - k)
               for k in range(n + 1) if sign_test(k, n - k) <= alpha)
