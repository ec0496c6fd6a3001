"""Instrument drivers and the transports they speak through."""
from importlib import import_module

# station file driver name -> (module, class, role)
DRIVERS = {
    "keithley2450": ("keithley2450", "Keithley2450", "smu"),
    "keysight_b2900": ("keysight_b2900", "KeysightB2900", "smu"),
    "keithley2600b": ("keithley2600b", "Keithley2600B", "smu"),
    "keysight81160a": ("keysight81160a", "Keysight81160A", "pulse"),
    "keysight33500b": ("keysight33500b", "Keysight33500B", "pulse"),
    "fpga_board": ("fpga", "FpgaBoard", "board"),
}


def driver_class(name: str) -> type:
    """The driver class for a station-file driver name."""
    module, cls, _ = DRIVERS[name]
    return getattr(import_module(f"{__name__}.{module}"), cls)
