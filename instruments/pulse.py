"""What the crossbar needs from any pulse generator; every pulse-generator driver provides it."""
from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class PulseGenerator(Protocol):
    """A pulse/function generator whose channel `channel` feeds the board's pulse input."""

    name: str

    def check_identity(self) -> str:
        """Read *IDN?; raise InstrumentError for a wrong model."""

    def configure_burst(self, amplitude: float, width: float, count: int, period: float,
                        channel: int = 1, base: float = 0.0, edge: float | None = None) -> None:
        """Set up `count` rectangular pulses from `base` to `base + amplitude` V (into a high-Z
        load: the driver sets the output load to high impedance), `width` s wide at 50 %,
        every `period` s, fired by a bus trigger; output stays off. Checks the error queue."""

    def set_output(self, on: bool, channel: int = 1) -> None: ...

    def fire(self) -> None:
        """Bus trigger (*TRG), then wait (*OPC?) until the burst has been delivered."""

    def safe_state(self) -> None:
        """Every channel's output off and its levels at 0 V."""

    def confirm(self, always: bool = False) -> None:
        """*OPC?: the commands sent so far have arrived (unless `always`, only after a link failure)."""

    def outputs_on(self) -> list[int]:
        """The channels whose output is on, as the instrument reports them (:OUTPn?)."""

    def close(self) -> None: ...
