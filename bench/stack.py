"""Driver-stack overhead and sweep round trips, measured against raw access in the same run.

Prints one JSON object:
- per-query time of the labctl driver stack (driver + VisaTransport) against a raw PyVISA
  query to the same virtual instrument over loopback TCP, and the ratio (target <= 1.2);
- the same in-process (driver + InProcessTransport against twin.handle directly);
- round trips (replies read) used by a 200-point hardware-timed I-V sweep on each SMU driver
  (target <= 10).
Usage: python bench/stack.py [--queries N]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pyvisa
from labctl.instruments import driver_class
from labctl.instruments.transport import InProcessTransport, VisaTransport
from labctl.sim.lab import SMU_TWINS, twin_class
from labctl.sim.server import serve


class Resistor:
    """An SmuLoad: 10 kOhm to ground."""

    def apply(self, v, duration):
        return 0.0 if v is None else v / 1e4

    def current(self, v):
        return v / 1e4


class CountingTransport(InProcessTransport):
    """Counts replies read: one per round trip."""

    replies = 0

    def read_line(self, terminator=b"\n"):
        self.replies += 1
        return super().read_line(terminator)


def per_query(ask, n: int) -> float:
    ask()  # warm up
    start = time.perf_counter()
    for _ in range(n):
        ask()
    return (time.perf_counter() - start) / n


def best_of(fn, repeats: int = 5) -> float:
    return min(fn() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    n = parser.parse_args().queries
    twin = twin_class(SMU_TWINS, "keithley2450", "SMU")(Resistor())
    server = serve(twin)
    host, port = server.address
    resource = f"TCPIP0::{host}::{port}::SOCKET"
    rm = pyvisa.ResourceManager("@py")
    raw = rm.open_resource(resource, read_termination="\n", write_termination="\n")
    driver = driver_class("keithley2450")(VisaTransport(resource))
    try:
        tcp_raw = best_of(lambda: per_query(lambda: raw.query(":SOUR:VOLT?"), n))
        tcp_driver = best_of(lambda: per_query(lambda: driver.source_voltage, n))
    finally:
        raw.close()
        driver.close()
        rm.close()
        server.close()
    local = driver_class("keithley2450")(InProcessTransport(twin))
    local_raw = best_of(lambda: per_query(lambda: twin.handle(b":SOUR:VOLT?\n"), n))
    local_driver = best_of(lambda: per_query(lambda: local.source_voltage, n))

    round_trips = {}
    kwargs = {"keysight_b2900": {"channel": 1}, "keithley2600b": {"channel": "a"}}
    for name in SMU_TWINS:
        transport = CountingTransport(twin_class(SMU_TWINS, name, "SMU")(Resistor()))
        smu = driver_class(name)(transport, name="smu", **kwargs.get(name, {}))
        smu.check_identity()
        smu.configure_voltage_source(1e-3)
        transport.replies = 0
        v, i = smu.sweep_list(np.linspace(-1, 1, 200), 0.0)
        assert len(v) == 200 and np.allclose(i, v / 1e4, rtol=1e-5)
        round_trips[name] = transport.replies

    ratio_tcp = tcp_driver / tcp_raw
    print(json.dumps({
        "tcp": {"raw_pyvisa_us": tcp_raw * 1e6, "labctl_driver_us": tcp_driver * 1e6, "ratio": ratio_tcp},
        "in_process": {"raw_twin_us": local_raw * 1e6, "labctl_driver_us": local_driver * 1e6,
                       "ratio": local_driver / local_raw},
        "sweep_200_points_round_trips": round_trips,
        "targets": {"tcp_ratio_max": 1.2, "round_trips_max": 10,
                    "met": ratio_tcp <= 1.2 and max(round_trips.values()) <= 10},
    }, indent=2))


if __name__ == "__main__":
    main()
