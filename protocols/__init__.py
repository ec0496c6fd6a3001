"""Measurement protocols. Each module defines one Protocol subclass; PROTOCOLS maps name -> it."""
from labctl.engine import Protocol

from .endurance import Endurance
from .forming import Forming
from .inference import Inference
from .iv_sweep import IVSweep
from .mvm import MVM
from .parallel_update import ParallelUpdate
from .pulse_response import PulseResponse
from .read_map import ReadMap
from .read_noise import ReadNoise
from .retention import Retention
from .train import Train
from .variability_map import VariabilityMap
from .weight_transfer import WeightTransfer
from .write_verify import WriteVerify

PROTOCOLS: dict[str, Protocol] = {p.name: p() for p in (Forming, IVSweep, ReadMap, WriteVerify, Retention, ReadNoise,
                                                     PulseResponse, Endurance, VariabilityMap, MVM, WeightTransfer,
                                                     ParallelUpdate, Train, Inference)}
