"""Data models behind the live plots, and the time-left estimate (no Qt here).

Long runs stay fluid because nothing grows without bound: each curve keeps at most
`max_stored` points (beyond that it keeps every 2nd point and samples new ones at the same
stride), a plot keeps at most `max_groups` curves (the oldest goes first), and what is drawn is
at most `max_drawn` points per curve (min/max per bucket, so spikes survive decimation).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import numpy as np

from labctl.live import LivePlot

MAX_STORED = 200_000
MAX_DRAWN = 2_000
MAX_GROUPS = 64


def minmax_decimate(x: np.ndarray, y: np.ndarray, max_points: int = MAX_DRAWN) -> tuple[np.ndarray, np.ndarray]:
    """At most ~max_points points that keep each bucket's minimum and maximum of y, in order."""
    n = len(x)
    if n <= max_points:
        return x, y
    buckets = max(1, max_points // 2)
    size = n // buckets
    m = buckets * size
    yb = y[:m].reshape(buckets, size)
    if np.isnan(yb).any():
        yb = np.where(np.isnan(yb), np.nanmean(y), yb)
    base = np.arange(buckets) * size
    index = np.empty(2 * buckets + (m < n), dtype=np.intp)
    lo, hi = base + yb.argmin(axis=1), base + yb.argmax(axis=1)
    index[:2 * buckets:2], index[1:2 * buckets:2] = np.minimum(lo, hi), np.maximum(lo, hi)
    if m < n:
        index[-1] = n - 1
    return x[index], y[index]


class Curve:
    """Growing (x, y) of one curve: amortized appends, bounded by stride decimation."""

    def __init__(self, max_stored: int = MAX_STORED):
        self.max_stored = max_stored
        self._x = np.empty(1024)
        self._y = np.empty(1024)
        self.n = 0
        self.stride = 1  # every stride-th point offered is kept
        self.seen = 0  # points offered so far
        self.version = 0  # bumped on every change; the view redraws when it differs

    def extend(self, x: np.ndarray, y: np.ndarray) -> None:
        first = (-self.seen) % self.stride  # offset of the next kept point in this block
        self.seen += len(x)
        x, y = x[first::self.stride], y[first::self.stride]
        if not len(x):
            return
        need = self.n + len(x)
        if need > len(self._x):
            size = max(need, 2 * len(self._x))
            self._x = np.resize(self._x, size)
            self._y = np.resize(self._y, size)
        self._x[self.n:need], self._y[self.n:need] = x, y
        self.n = need
        while self.n > self.max_stored:  # keep points whose index is a multiple of 2 * stride
            keep = (self.n + 1) // 2
            self._x[:keep], self._y[:keep] = self._x[:self.n:2].copy(), self._y[:self.n:2].copy()
            self.n, self.stride = keep, self.stride * 2
        self.version += 1

    @property
    def x(self) -> np.ndarray:
        return self._x[:self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[:self.n]


def group_label(plot: LivePlot, key: Hashable) -> str:
    """A curve's legend text from its group key (one value per group column)."""
    assert isinstance(key, tuple)
    names = plot.group_columns
    return ", ".join(f"{n} {v:g}" if isinstance(v, float) else f"{n} {v}" for n, v in zip(names, key))


def _key(values) -> tuple:
    """A hashable group key of plain Python values (bytes decoded)."""
    out = []
    for v in values:
        v = v.item() if hasattr(v, "item") else v
        out.append(v.decode() if isinstance(v, bytes) else v)
    return tuple(out)


class CurveSet:
    """The curves of one LivePlot, fed with the row blocks of its table."""

    def __init__(self, plot: LivePlot, max_groups: int = MAX_GROUPS, max_stored: int = MAX_STORED):
        self.plot = plot
        self.max_groups = max_groups
        self.max_stored = max_stored
        self.curves: OrderedDict[Hashable, Curve] = OrderedDict()
        self.dropped = 0  # groups evicted to respect max_groups
        self.points = 0
        self.bounds: list[float] | None = None  # x min (> 0 on a log axis), x max, y min, y max

    def add(self, columns: dict[str, Any]) -> None:
        p = self.plot
        try:
            x = np.atleast_1d(np.asarray(columns[p.x], dtype=float))
            y = np.atleast_1d(np.asarray(columns[p.y], dtype=float))
        except (KeyError, TypeError, ValueError):
            return
        n = max(len(x), len(y))
        x, y = np.broadcast_to(x, (n,)), np.broadcast_to(y, (n,))
        self._grow(x, y)
        keys = [np.broadcast_to(np.atleast_1d(np.asarray(columns.get(c, 0))), (n,)) for c in p.group_columns]
        self.points += n
        if not keys:
            self._curve(()).extend(x, y)
            return
        if all(not len(k) or np.all(k == k[0]) for k in keys):  # the usual case: one group per block
            self._curve(_key(k[0] for k in keys)).extend(x, y)
            return
        table = np.rec.fromarrays([np.ascontiguousarray(k) for k in keys])
        groups, first, inverse = np.unique(table, return_index=True, return_inverse=True)
        for g in np.argsort(first, kind="stable"):  # groups in order of appearance
            index = np.flatnonzero(inverse.ravel() == g)
            self._curve(_key(groups[g])).extend(x[index], y[index])

    def _grow(self, x: np.ndarray, y: np.ndarray) -> None:
        ok = np.isfinite(x) & np.isfinite(y)
        if self.plot.log_x:
            ok &= x > 0
        if not ok.any():
            return
        x, y = x[ok], y[ok]
        new = [float(x.min()), float(x.max()), float(y.min()), float(y.max())]
        if self.bounds is None:
            self.bounds = new
        else:
            b = self.bounds
            self.bounds = [min(b[0], new[0]), max(b[1], new[1]), min(b[2], new[2]), max(b[3], new[3])]

    def _curve(self, key: Hashable) -> Curve:
        curve = self.curves.get(key)
        if curve is None:
            curve = self.curves[key] = Curve(self.max_stored)
            while len(self.curves) > self.max_groups:
                self.curves.popitem(last=False)
                self.dropped += 1
        return curve


class Eta:
    """Time left from progress reports (done, total): the rate between the first report and the
    latest one, excluding paused time, counted down from the latest report."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        self._t0: float | None = None  # first report (of this progress run)
        self._t_last: float | None = None  # latest report
        self._done0 = 0
        self._paused_at: float | None = None
        self._paused = 0.0  # paused seconds since the first report
        self.done = self.total = 0

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = self._clock()

    def resume(self) -> None:
        if self._paused_at is not None:
            if self._t0 is not None:
                self._paused += self._clock() - self._paused_at
            self._paused_at = None

    def update(self, done: int, total: int, at: float | None = None) -> None:
        at = self._clock() if at is None else at
        if self._t0 is None or done < self._done0 or total != self.total:
            self._t0, self._done0, self._paused = at, done, 0.0
        self.done, self.total, self._t_last = done, total, at
        self._paused_last = self._paused

    def seconds_left(self, now: float | None = None) -> float | None:
        """None until two reports show progress."""
        now = self._clock() if now is None else now
        if self._t0 is None or self._t_last is None or self.done <= self._done0 or self.total <= 0:
            return None
        active = self._t_last - self._t0 - self._paused_last
        if active <= 0:
            return None
        left = (self.total - self.done) * active / (self.done - self._done0)
        paused_since = self._paused - self._paused_last + (now - self._paused_at if self._paused_at else 0.0)
        return max(0.0, left - max(0.0, now - self._t_last - paused_since))


def expand_range(current: tuple[float, float] | None, low: float, high: float, grow: float,
                 log: bool = False) -> tuple[float, float] | None:
    """A view range that holds [low, high]: the current one if it already does, else one grown
    past the data by `grow` x the span (so it changes rarely while data keep coming); None if
    nothing changes. On a log axis the range is in decades (what pyqtgraph's log mode uses)."""
    if log:
        low, high = np.log10(low), np.log10(high)
    if current is not None and current[0] <= low and high <= current[1]:
        return None
    span = high - low
    if span <= 0:
        span = abs(high) * 0.1 or 1.0
    if current is None:
        return float(low - 0.05 * span), float(high + 0.05 * span)
    lo = current[0] if low >= current[0] else low - grow * span
    hi = current[1] if high <= current[1] else high + grow * span
    return float(lo), float(hi)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "time left: estimating..."
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"time left: {seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"time left: {seconds // 60} min {seconds % 60:02d} s"
    return f"time left: {seconds} s"
