"""Measurement protocols. Each module defines one Protocol subclass; PROTOCOLS maps name -> it."""
from labctl.engine import Protocol

from .forming import Forming
from .iv_sweep import IVSweep
from .read_map import ReadMap

PROTOCOLS: dict[str, Protocol] = {p.name: p() for p in (Forming, IVSweep, ReadMap)}
