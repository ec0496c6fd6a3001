"""Virtual Keithley 2600B System SourceMeter speaking TSP, its smua driving a load.

Every received line is one TSP chunk, as on the instrument: it is parsed whole first (a syntax
error queues -285 and runs nothing), then run statement by statement; a runtime error (-286) or an
instrument error (e.g. 1101 "Parameter too big") is queued and skips the rest of the chunk. Only
``print``/``printbuffer`` and ``*IDN?`` (with ``*OPC?``) reply.

This module is the transport face and the wiring: the Lua subset is `tsp_lua`, the instrument's
TSP objects and their timing are `keithley2600b_model`. smua drives `load`; smub (two-channel
models) is an open circuit.
"""
from __future__ import annotations

from .keithley2600b_model import MODELS, Instrument2600B
from .loads import SmuLoad
from .scpi import ERRORS, MAX_INPUT
from .tsp_lua import Interpreter, TspError

FIRMWARE = "4.0.0"


class _OpenCircuit:
    """What smub drives: nothing, 0 A at any voltage."""

    def apply(self, v: float | None, duration: float) -> float:
        return 0.0

    def current(self, v: float) -> float:
        return 0.0


class VirtualKeithley2600B:
    """A 2600B whose smua drives `load`; its time (`elapsed`, s) passes only through the loads.

    `output_on` and `source_level` (smua's programmed level, V) are plain attributes so tests and
    the bench can check the safe state (0 V, output off).
    """

    def __init__(self, load: SmuLoad, model: str = "2636B", serial: str = "4000001"):
        if model not in MODELS:
            raise ValueError(f"model {model!r} is not one of {', '.join(MODELS)}")
        self.model = model
        self.idn = f"Keithley Instruments Inc., Model {model}, {serial}, {FIRMWARE}"
        loads = {"a": load, "b": _OpenCircuit()} if MODELS[model][0] == 2 else {"a": load}
        self.instrument = Instrument2600B(model, loads)
        self.interpreter = Interpreter(self.instrument.globals)
        out = self.instrument.out
        self._common = {"*IDN?": lambda: out.append(self.idn), "*RST": self.instrument.reset,
                        "*OPC?": lambda: out.append("1"), "*WAI": lambda: None}
        self._rx = bytearray()

    @property
    def elapsed(self) -> float:
        return self.instrument.elapsed

    @property
    def output_on(self) -> bool:
        return self.instrument.channels["a"].output

    @output_on.setter
    def output_on(self, value: bool) -> None:
        self.instrument.channels["a"].output = value

    @property
    def source_level(self) -> float:
        return self.instrument.channels["a"].level

    @source_level.setter
    def source_level(self, value: float) -> None:
        channel = self.instrument.channels["a"]
        channel.level = channel.applied = value

    def handle(self, data: bytes) -> bytes:
        """Feed received bytes; run every line they complete and return what it printed."""
        self._rx += data
        while (end := self._rx.find(b"\n")) >= 0:
            line = self._rx[:end].decode("latin-1").strip()
            del self._rx[: end + 1]
            self._run(line)
        if len(self._rx) > MAX_INPUT:  # no terminator in sight: drop it, as a full input buffer does
            self._rx.clear()
            self.instrument.errors.push(-363, ERRORS[-363], self.instrument.elapsed)
        out = self.instrument.out
        reply = "".join(line + "\n" for line in out).encode("latin-1")
        out.clear()
        return reply

    def device_clear(self) -> None:
        """Drop a partly received line (a client disconnected, or a VISA clear)."""
        self._rx.clear()

    def _run(self, line: str) -> None:
        try:
            if line.upper() in self._common:
                self._common[line.upper()]()
            else:
                self.interpreter.run(line)
        except TspError as exc:
            self.instrument.errors.push(exc.code, exc.message, self.instrument.elapsed)
