"""Strong-Wolfe line search (Nocedal & Wright, *Numerical Optimization*, 2nd ed., Alg. 3.5
"line search" and Alg. 3.6 "zoom", with the cubic interpolation of eq. 3.59).

Along a descent direction d from x (f = f(x), slope gtd = <g(x), d> < 0) find t with

    f(x + t d) <= f + c1 t gtd              (sufficient decrease)
    |<g(x + t d), d>| <= -c2 gtd            (strong curvature condition)

Phase 1 grows t until an interval [lo, hi] is known to contain such a point; phase 2
("zoom") shrinks that interval by safeguarded cubic interpolation. The safeguards are the
ones torch.optim.LBFGS uses, so that ``optforge.LBFGS(line_search_fn="strong_wolfe")``
tries the same points as torch (and its checkpoints continue the same way):

- extrapolation picks the cubic's minimiser clamped to [t + 0.01 (t - t_prev), 10 t];
- inside zoom, a trial closer than 10% of the interval's width to an end point is moved
  to 10% from that end if the previous trial was also that close (or if it fell outside);
- the search stops after ``max_ls`` evaluations or when the interval is shorter than
  ``tolerance_change`` in the max-norm of t d.
"""
from __future__ import annotations

import math

import torch


def cubic_minimizer(t1, f1, g1, t2, f2, g2, bounds=None) -> float:
    """Minimiser of the cubic through (t1, f1, slope g1) and (t2, f2, slope g2), clamped
    to ``bounds`` (default: the two points). Without a real minimiser: the midpoint.

    N&W eq. 3.59, written from the larger point so that the result does not depend on the
    order the two points are given in.
    """
    lo_b, hi_b = bounds if bounds is not None else (min(t1, t2), max(t1, t2))
    if t1 > t2:
        t1, f1, g1, t2, f2, g2 = t2, f2, g2, t1, f1, g1
    d1 = g1 + g2 - 3 * (f1 - f2) / (t1 - t2)
    disc = d1 * d1 - g1 * g2
    if disc < 0:
        return (lo_b + hi_b) / 2.0
    d2 = math.sqrt(disc)
    t = t2 - (t2 - t1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    return min(max(t, lo_b), hi_b)


class _Point:
    """One evaluated trial: step t, loss f, flat gradient g, slope <g, d>."""

    __slots__ = ("t", "f", "g", "gtd")

    def __init__(self, t, f, g, gtd):
        self.t, self.f, self.g, self.gtd = t, f, g, gtd


def strong_wolfe(evaluate, t: float, d: torch.Tensor, f: float, g: torch.Tensor, gtd: float,
                 *, c1: float = 1e-4, c2: float = 0.9, tolerance_change: float = 1e-9,
                 max_ls: int = 25):
    """``evaluate(t) -> (loss, flat_grad)`` at x + t d (leaving x in place).

    Returns (f_new, g_new, t, evaluations): the accepted point (the best one found if the
    search ran out of evaluations).
    """
    d_scale = float(d.abs().max())
    start = _Point(0.0, f, g, gtd)
    prev = start
    f_new, g_new = evaluate(t)
    cur = _Point(t, f_new, g_new, float(g_new.dot(d)))
    evals, tries = 1, 0
    bracket = None   # [a, b] containing a strong-Wolfe point (not necessarily a < b)
    while tries < max_ls:
        if cur.f > f + c1 * cur.t * gtd or (tries > 1 and cur.f >= prev.f):
            bracket = [prev, cur]          # decrease failed (or stalled): the point is in it
            break
        if abs(cur.gtd) <= -c2 * gtd:
            return cur.f, cur.g, cur.t, evals   # both conditions hold
        if cur.gtd >= 0:
            bracket = [prev, cur]          # the slope turned: a minimiser lies between
            break
        # still descending steeply: extrapolate, at least 1% beyond t and at most 10 t
        t_next = cubic_minimizer(prev.t, prev.f, prev.gtd, cur.t, cur.f, cur.gtd,
                                 bounds=(cur.t + 0.01 * (cur.t - prev.t), cur.t * 10))
        prev = cur
        f_new, g_new = evaluate(t_next)
        cur = _Point(t_next, f_new, g_new, float(g_new.dot(d)))
        evals += 1
        tries += 1
    if bracket is None:                    # out of evaluations while extrapolating
        best = start if start.f <= cur.f else cur
        return best.f, best.g, best.t, evals
    return _zoom(evaluate, bracket, d, f, gtd, d_scale, c1, c2, tolerance_change,
                 max_ls, tries, evals)


def _zoom(evaluate, bracket, d, f, gtd, d_scale, c1, c2, tolerance_change, max_ls, tries,
          evals):
    """N&W Alg. 3.6: ``lo`` always has the lower loss; the interval shrinks towards it."""
    lo, hi = (0, 1) if bracket[0].f <= bracket[1].f else (1, 0)
    near_end_before = False
    while tries < max_ls:
        a, b = bracket[0], bracket[1]
        left, right = min(a.t, b.t), max(a.t, b.t)
        if (right - left) * d_scale < tolerance_change:
            break
        t = cubic_minimizer(a.t, a.f, a.gtd, b.t, b.f, b.gtd)
        margin = 0.1 * (right - left)
        if min(right - t, t - left) < margin:
            # a trial hugging an end point makes little progress: twice in a row (or
            # outside the interval) it is pushed 10% inside
            if near_end_before or t >= right or t <= left:
                t = right - margin if abs(t - right) < abs(t - left) else left + margin
                near_end_before = False
            else:
                near_end_before = True
        else:
            near_end_before = False
        f_new, g_new = evaluate(t)
        cur = _Point(t, f_new, g_new, float(g_new.dot(d)))
        evals += 1
        tries += 1
        if cur.f > f + c1 * t * gtd or cur.f >= bracket[lo].f:
            bracket[hi] = cur              # not good enough: it becomes the far end
            lo, hi = (0, 1) if bracket[0].f <= bracket[1].f else (1, 0)
            continue
        if abs(cur.gtd) <= -c2 * gtd:
            bracket[lo] = cur
            break
        if cur.gtd * (bracket[hi].t - bracket[lo].t) >= 0:
            bracket[hi] = bracket[lo]      # the slope points away from hi: keep [cur, lo]
        bracket[lo] = cur
    best = bracket[lo]
    return best.f, best.g, best.t, evals
