"""Keysight (Agilent) 33500B and 33600A series waveform generators: the model table and limits.

What the driver (instruments/keysight33500b.py) and the twin (sim_backend/keysight33500b.py) agree
on, so both refuse the same settings. Limits follow the 33500B/33600A Operating and Service Guide
and data sheets.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """What differs between models: channel count and the fastest pulse timing (s)."""

    channels: int
    min_period: float
    min_width: float
    min_edge: float


_33500B_20MHZ = dict(min_period=1 / 20e6, min_width=16e-9, min_edge=8.4e-9)
_33500B_30MHZ = dict(min_period=1 / 30e6, min_width=16e-9, min_edge=8.4e-9)
_33600A_80MHZ = dict(min_period=1 / 50e6, min_width=5e-9, min_edge=2.9e-9)
_33600A_120MHZ = dict(min_period=1 / 100e6, min_width=5e-9, min_edge=2.9e-9)

MODELS: dict[str, ModelSpec] = {
    "33509B": ModelSpec(1, **_33500B_20MHZ),
    "33510B": ModelSpec(2, **_33500B_20MHZ),
    "33511B": ModelSpec(1, **_33500B_20MHZ),
    "33512B": ModelSpec(2, **_33500B_20MHZ),
    "33519B": ModelSpec(1, **_33500B_30MHZ),
    "33520B": ModelSpec(2, **_33500B_30MHZ),
    "33521B": ModelSpec(1, **_33500B_30MHZ),
    "33522B": ModelSpec(2, **_33500B_30MHZ),
    "33611A": ModelSpec(1, **_33600A_80MHZ),
    "33612A": ModelSpec(2, **_33600A_80MHZ),
    "33621A": ModelSpec(1, **_33600A_120MHZ),
    "33622A": ModelSpec(2, **_33600A_120MHZ),
}

MAX_PERIOD = 1e6  # s
MAX_EDGE = 1e-6  # s
EDGE_FIT = 0.625  # an edge takes at most this fraction of the time spent at the level it leaves
V_OPEN_MAX = 10.0  # |level| at open circuit (5 V into 50 ohm)
AMPLITUDE_OPEN_MIN = 2e-3  # Vpp at open circuit (1 mVpp into 50 ohm)
BURST_MAX = 100_000_000


def width_limits(spec: ModelSpec, period: float) -> tuple[float, float]:
    """Allowed pulse width (s) at `period`: at least the minimum width at each level."""
    return spec.min_width, period - spec.min_width


def edge_limits(width: float, period: float) -> tuple[float, float]:
    """Largest leading and trailing edge time (s) that fit `width` and the rest of `period`."""
    return min(MAX_EDGE, EDGE_FIT * width), min(MAX_EDGE, EDGE_FIT * (period - width))
