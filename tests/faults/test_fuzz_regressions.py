"""Regression tests of the defects the parser fuzzing found (tests/faults/fuzzkit.py, bench/fuzz.py),
each the shrunk input that broke a property: a twin's handle() raising instead of queueing the
instrument's error, a labctl parser raising an undocumented error or accepting a bad value."""
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from fuzzkit import (
    DEVICE_DOC,
    DEVICE_TEXT,
    SCPI_TWINS,
    STATE_DICTS,
    STATE_FILES,
    STATION_DOCS,
    STATION_FILES,
    OhmicLoad,
    _copy,
    toml_dumps,
)
from labctl.sim.keithley2600b import VirtualKeithley2600B
from labctl.sim.lab import SimLab
from labctl.sim.physics import DeviceParams

from labctl.params import Parameter, ParameterError, parse_cli_value, parse_settings
from labctl.station import Station, StationError, load_station, parse_station


def queued(twin) -> str:
    return twin.handle(b":SYST:ERR?\n").decode()


def tsp_error(twin) -> str:
    return twin.handle(b"print(errorqueue.next())\n").decode()


@pytest.mark.parametrize("name", sorted(SCPI_TWINS))
def test_scpi_header_suffix_of_thousands_of_digits_is_out_of_range(name):
    # int() refuses strings of more than 4300 digits (ValueError): the suffix of ":OUTP999...9" is out
    # of range (-114), as one of 20 digits is
    twin = SCPI_TWINS[name]()
    assert twin.handle(b":OUTP" + b"9" * 5000 + b" ON\n") == b""
    assert queued(twin).split(",")[0].lstrip("+") == "-114"
    assert twin.handle(b"*IDN?\n") == (twin.idn + "\n").encode()
    assert twin.handle(b":OUTP" + b"0" * 5000 + b"1?\n") == b"0\n"  # leading zeros: still channel 1


def test_b2900_channel_list_of_thousands_of_digits_is_an_illegal_value():
    twin = SCPI_TWINS["keysight_b2900"]()
    assert twin.handle(b":MEAS? (@" + b"9" * 5000 + b")\n") == b""
    assert queued(twin).startswith("-224,")


def tsp_twin():
    return VirtualKeithley2600B(OhmicLoad(), model="2636B")


@pytest.mark.parametrize("chunk", [b"x = " + b"(" * 5000 + b"1" + b")" * 5000, b"print(" * 3000,
                                   b"x = " + b"{" * 3000, b"x = " + b"- " * 3000 + b"1",
                                   b"for k=1,2 do " * 2000, b"x" + b"[x" * 3000,
                                   # suffix chains parse in a loop but evaluate recursively (bench/fuzz.py)
                                   b"x = smua" + b".smua" * 5000, b"x = y" + b"[1]" * 5000, b"f" + b"()" * 5000])
def test_tsp_deep_nesting_is_a_syntax_error(chunk):
    # the recursive-descent parser hit Python's recursion limit (RecursionError out of handle); Lua
    # refuses such a chunk: "chunk has too many syntax levels"
    twin = tsp_twin()
    assert twin.handle(chunk + b"\n") == b""
    assert tsp_error(twin).startswith("-2.85000e+02\tTSP Syntax error at line 1: chunk has too many syntax levels")
    assert twin.handle(b"*IDN?\n") == (twin.idn + "\n").encode()


def test_tsp_nesting_within_the_limit_still_runs():
    twin = tsp_twin()
    assert twin.handle(b"print(" + b"(" * 150 + b"1" + b")" * 150 + b")\n") == b"1.00000e+00\n"
    # nesting and a suffix chain together up to the limit: evaluated without reaching the recursion limit
    chunk = b"print(" * 40 + b"(" * 40 + b"x" + b"[1]" * 70 + b")" * 40 + b")" * 40  # 40 x 2 + 40 + 70 levels
    assert twin.handle(b"x = {1} " + chunk + b"\n") == b""
    assert "attempt to index a number value" in tsp_error(twin)


def test_tsp_extra_arguments_are_dropped_and_missing_ones_are_nil():
    # Lua drops extra arguments and passes nil for missing ones; the twin called the Python function
    # with them (TypeError out of handle)
    twin = tsp_twin()
    assert twin.handle(b"reset(true) smua.nvbuffer1.clear(1, 2) print(errorqueue.count)\n") == b"0.00000e+00\n"
    assert twin.handle(b"smua.trigger.source.linearv()\n") == b""
    assert "bad argument #1 to `linearv' (number expected, got nil)" in tsp_error(twin)


@pytest.mark.parametrize("chunk", [b"x = {1} print(x[1e400])", b"print(smua.nvbuffer1[1e400])",
                                   b"print(smua.nvbuffer1[-1e400])"])
def test_tsp_index_by_an_infinite_number_is_nil(chunk):
    twin = tsp_twin()  # int(inf): OverflowError out of handle
    assert twin.handle(chunk + b"\n") == b"nil\n"


def test_b2900_channel_range_to_a_huge_channel_is_refused_at_once():
    # the range was expanded to a set before its channels were checked: (@1:999999999) built a set of
    # 10^9 numbers (a hang), (@1:99...9) of 5000 digits asked for range(1, sys.maxsize)
    twin = SCPI_TWINS["keysight_b2900"]()
    for channels in (b"(@1:999999999)", b"(@1:" + b"9" * 5000 + b")", b"(@999999999:1)"):
        assert twin.handle(b":MEAS? " + channels + b"\n") == b""
        assert queued(twin).startswith("-224,")
    assert twin.handle(b":FETC:CURR? (@2:1)\n").count(b",") == 1  # (@2:1): channels 1 and 2


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def test_2450_sweep_count_is_not_expanded_into_a_list():
    # the sweep's levels were stored `count` times over: 10^6 points x 268435455 raised MemoryError out
    # of handle(), 10^6 x 1000 took minutes and gigabytes before :INIT
    twin = SCPI_TWINS["keithley2450"]()
    reply, seconds = timed(lambda: twin.handle(b":SOUR:SWE:VOLT:LIN 0,1,1000000,-1,268435455\n"))
    assert reply == b"" and seconds < 1.0
    assert queued(twin).startswith("0,")
    # a sweep of 3 points run twice (count 2): the points of both runs, in order
    twin.handle(b':SOUR:SWE:VOLT:LIN 0,1,3,-1,2;:INIT;:TRAC:DATA? 1,6,"defbuffer1",SOUR\n')
    levels = twin.handle(b':TRAC:DATA? 1,6,"defbuffer1",SOUR\n').decode().split(",")
    assert [float(v) for v in levels] == [0.0, 0.5, 1.0, 0.0, 0.5, 1.0]


def test_2450_fail_abort_ends_every_repetition_of_the_sweep():
    twin = SCPI_TWINS["keithley2450"]()  # 10 kOhm: 0.5 V draws 50 uA, over a 10 uA limit
    twin.handle(b":SOUR:VOLT:ILIM 1e-5;:SOUR:SWE:VOLT:LIN 0,1,3,-1,5,BEST,ON;:INIT\n")
    assert twin.handle(b':TRAC:ACT? "defbuffer1"\n') == b"2\n"  # 0 V, then 0.5 V trips: no more


def test_2600b_linear_sweep_of_2e9_points_is_not_built_as_a_list():
    # linearv(0, 1, 2147483647) built the 2^31 - 1 levels (a hang, then MemoryError)
    twin = tsp_twin()
    reply, seconds = timed(lambda: twin.handle(b"smua.trigger.source.linearv(0, 1, 2147483647)\n"))
    assert reply == b"" and seconds < 1.0
    twin.handle(b"smua.trigger.source.linearv(0, 1, 5) smua.trigger.source.action = 1 smua.trigger.count = 5 "
                b"smua.trigger.measure.i(smua.nvbuffer1) smua.nvbuffer1.collectsourcevalues = 1 "
                b"smua.trigger.measure.action = 1 smua.source.output = 1 smua.trigger.initiate()\n")
    assert twin.handle(b"printbuffer(1, 5, smua.nvbuffer1.sourcevalues)\n") == \
        b"0.00000e+00, 2.50000e-01, 5.00000e-01, 7.50000e-01, 1.00000e+00\n"
    assert twin.handle(b"smua.trigger.source.linearv(0, 300, 3)\n") == b""  # a level past 202 V
    assert tsp_error(twin).startswith("1.10100e+03\tParameter too big")


def test_2600b_trigger_model_with_nothing_to_do_returns_at_once():
    # count 2^31 - 1 with no source or measure action: 2^31 empty iterations (half an hour)
    twin = tsp_twin()
    _, seconds = timed(lambda: twin.handle(b"smua.trigger.count = 2147483647 smua.trigger.initiate()\n"))
    assert seconds < 1.0 and tsp_error(twin).startswith("0.00000e+00\tQueue Is Empty")
    # source action only, zero delay, output off: nothing held, nothing stored; the level ends at the
    # point the count stops on, or back at the programmed level with SOURCE_IDLE
    twin.handle(b"smua.trigger.source.listv({1, 2, 3}) smua.trigger.source.action = 1 smua.trigger.endsweep.action = 1 "
                b"smua.trigger.count = 2147483647 smua.trigger.initiate()\n")
    assert twin.instrument.channels["a"].applied == [1, 2, 3][(2147483647 - 1) % 3]


def test_2600b_endless_for_loop_is_stopped_with_a_runtime_error():
    # `for k = 1, 1e400 do end` never ended: the twin held its server's lock for ever; it stops after
    # LOOP_ITERATIONS in one chunk and queues -286
    twin = tsp_twin()
    _, seconds = timed(lambda: twin.handle(b"for k = 1, 1e400 do end\n"))
    assert seconds < 5.0
    assert tsp_error(twin).startswith("-2.86000e+02\tTSP Runtime error at line 1: more than")
    assert twin.handle(b"n = 0 for k = 1, 5000 do x = k end print(x)\n") == b"5.00000e+03\n"


@pytest.mark.parametrize("chunk, printed", [(b"printbuffer(1, 1e400, {1})", b"1.00000e+00\n"),
                                            (b"printbuffer(-1e400, -1e400, {1})", b"\n"),
                                            (b"printbuffer(1e400, 1e400, {1})", b"\n")])
def test_2600b_printbuffer_with_infinite_bounds(chunk, printed):
    twin = tsp_twin()  # int(inf): OverflowError out of handle
    assert twin.handle(chunk + b"\n") == printed


@pytest.mark.parametrize("setting", [b"smua.source.delay", b"smua.measure.delay"])
def test_2600b_infinite_delay_is_too_big(setting):
    # accepted, then the next measurement made the virtual time infinite
    twin = tsp_twin()
    assert twin.handle(setting + b" = 1e400 print(smua.measure.i())\n") == b""
    assert tsp_error(twin).startswith("1.10100e+03\tParameter too big")
    assert math.isfinite(twin.elapsed)


# -- station and chip-map TOML (labctl.station.parse_station / load_station)

@pytest.mark.parametrize("section, key, value", [
    (("chip",), "rows", [4]), (("chip",), "rows", "4"), (("chip",), "cols", 8.5), (("chip",), "rows", True),
    (("chip",), "rows", 0), (("chip",), "wl_channels", 3), (("chip",), "wl_channels", ["a", 1, 2, 3]),
    (("chip",), "bl_channels", [4, 5, 6, 7, 8, 9, 10, -1]), (("chip",), "name", []),
    (("safe_operating_area",), "max_v_bl", [4.0]), (("safe_operating_area",), "max_v_bl", "4"),
    (("safe_operating_area",), "max_current", math.inf), (("safe_operating_area",), "max_v_wl", math.nan),
    (("safe_operating_area",), "max_v_sl", -1.0), (("safe_operating_area",), "max_pulses", 0),
    (("station",), "name", {}), (("instruments", "smu"), "resource", 5), (("instruments", "smu"), "resource", ""),
    (("instruments", "smu"), "driver", ["keithley2450"]), (("instruments", "smu"), "timeout", {}),
    (("instruments", "smu"), "timeout", -1.0), (("instruments", "board"), "baudrate", "fast"),
    (("instruments", "smu"), "channel", 0.5), (("simulator",), "device", 3), (("simulator",), "control", True)])
def test_station_value_of_the_wrong_type_is_a_station_error_naming_it(section, key, value):
    # int(), float() and tuple() of what the file held: TypeError / ValueError naming nothing (the CLI
    # shows a traceback), or a bad value accepted (a resource 5 failed later in Station, an SOA limit of
    # inf lifted the limit, NaN or 0 refused every request, a chip 8.5 columns wide became 8)
    doc = _copy(STATION_DOCS["sim"])
    parent = doc
    for name in section:
        parent = parent[name]
    parent[key] = value
    with pytest.raises(StationError) as error:
        parse_station(doc, "fuzzed.toml")
    assert "fuzzed.toml" in str(error.value) and key in str(error.value)


def test_station_values_of_the_right_types_still_load():
    doc = _copy(STATION_DOCS["bench-example"])
    doc["instruments"]["smu"]["channel"] = "b"
    doc["instruments"]["pulse"]["channel"] = 2
    doc["safe_operating_area"]["max_pulses"] = 100000  # an integer where a number is asked
    config = parse_station(doc, "bench.toml")
    assert config.soa.max_pulses == 100000.0 and config.instruments["board"].options["baudrate"] == 921600


@pytest.mark.parametrize("data", [b"J&V\xb7\xc7\n&", b"[station]\nname = \"\xff\"\n"])
def test_station_file_that_is_not_utf8_is_a_station_error_naming_it(tmp_path, data):
    # read_text() raised UnicodeDecodeError (TOML is UTF-8; the locale's codec was used)
    path = tmp_path / "bad.toml"
    path.write_bytes(data)
    with pytest.raises(StationError, match="bad.toml"):
        load_station(str(path))


# -- device TOML (labctl.sim.physics.DeviceParams.load)

def device_file(tmp_path, change=None, text=None) -> Path:
    doc = _copy(DEVICE_DOC)
    if change:
        change(doc)
    path = tmp_path / "device.toml"
    path.write_bytes(text if text is not None else toml_dumps(doc).encode())
    return path


@pytest.mark.parametrize("change, named", [
    (lambda d: d.__setitem__("window", 3), "window"),  # a section that is no table: AttributeError
    (lambda d: d["window"].__setitem__("g_min", 9e-6), "g_min"),  # an entry that is no table: TypeError
    (lambda d: d["window"]["g_min"].pop("value"), "g_min"),  # no value: KeyError
    (lambda d: d["window"]["g_min"].__setitem__("value", [1.0]), "g_min"),  # TypeError
    (lambda d: d["window"]["g_min"].__setitem__("value", "9e-6"), "g_min"),  # accepted: float("9e-6")
    (lambda d: d["window"]["g_min"].__setitem__("value", True), "g_min"),  # accepted as 1.0
    (lambda d: d["window"]["g_max"].__setitem__("value", math.nan), "g_max"),  # accepted: NaN physics
    (lambda d: d["forming"]["v_form_mean"].__setitem__("value", math.inf), "v_form_mean"),
    (lambda d: d["window"].__setitem__("v_th", {"value": 1.0}), "v_th"),  # defined twice: last one won
])
def test_device_file_bad_entry_is_a_value_error_naming_file_and_key(tmp_path, change, named):
    path = device_file(tmp_path, change)
    with pytest.raises(ValueError) as error:
        DeviceParams.load(path)
    assert str(path) in str(error.value) and named in str(error.value)


@pytest.mark.parametrize("text", [b"[window\n", b"g_min = \xff\n", b'x = "\xc3\n'])
def test_device_file_that_is_not_toml_names_the_file(tmp_path, text):
    # TOMLDecodeError / UnicodeDecodeError with a position but no file name (open_sim_lab's StationError
    # then said "device file: Invalid value (at line 1, column 9)")
    path = device_file(tmp_path, text=text)
    with pytest.raises(ValueError, match=str(path)):
        DeviceParams.load(path)


def test_device_file_with_integer_values_still_loads(tmp_path):
    path = device_file(tmp_path, lambda d: d["defects"]["p_stuck"].__setitem__("value", 0))
    assert DeviceParams.load(path).p_stuck == 0.0


# -- `--set` values (labctl.params.parse_cli_value / parse_settings, Parameter.validate)

@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 50_000, "9" * 5000, "-" + "9" * 5000])
def test_set_value_json_cannot_parse_is_kept_as_text(text):
    # json.loads raised RecursionError (deep nesting) or ValueError (an integer of > 4300 digits),
    # neither a JSONDecodeError: out of parse_settings, not a ParameterError
    assert parse_cli_value(text) == text
    assert parse_settings([f"cycles={text}"]) == {"cycles": text}
    with pytest.raises(ParameterError, match="cycles"):
        Parameter("cycles", "int", 1).validate(parse_cli_value(text))


@pytest.mark.parametrize("kind", ["float", "int", "floats"])
@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_set_value_not_finite_is_a_parameter_error_naming_it(kind, text):
    # NaN passed every limit (both comparisons false) and inf every missing one; for an int parameter
    # int(inf) / int(NaN) raised OverflowError / ValueError
    value = parse_cli_value(f"[{text}]" if kind == "floats" else text)
    with pytest.raises(ParameterError, match="width"):
        Parameter("width", kind, 1.0, minimum=0.0, maximum=10.0).validate(value)
    with pytest.raises(ParameterError, match="width"):
        Parameter("width", kind, 1.0).validate(value)


def test_set_value_integer_too_large_for_a_float_is_a_parameter_error():
    value = parse_cli_value("1" + "0" * 400)  # float(10**400): OverflowError
    with pytest.raises(ParameterError, match="v_set"):
        Parameter("v_set", "float", 1.0).validate(value)
    assert Parameter("v_set", "float", 1.0).validate(parse_cli_value("1e300")) == 1e300


# -- chip-state files (labctl.sim.lab.SimLab.load_physics)

def state_file(tmp_path, data: bytes) -> Path:
    path = tmp_path / "chip.npz"
    path.write_bytes(data)
    return path


def saved_state(tmp_path, change) -> Path:
    state = dict(STATE_DICTS[(2, 3)])
    change(state)
    path = tmp_path / "chip.npz"
    with open(path, "wb") as f:
        np.savez(f, **state)
    return path


@pytest.mark.parametrize("data", [b"", b"junk", b"PK\x03\x04" + b"\x00" * 100, STATE_FILES[(2, 3)][:100],
                                  STATE_FILES[(2, 3)][:-30]])
def test_state_file_not_an_npz_is_a_value_error_naming_it(tmp_path, data):
    # BadZipFile, EOFError or numpy's "pickled data" ValueError naming no file: out of Station() as is
    path = state_file(tmp_path, data)
    with pytest.raises(ValueError, match="chip.npz"):
        SimLab.load_physics(path)


def test_state_file_with_a_bad_crc_is_a_value_error_naming_it(tmp_path):
    data = bytearray(STATE_FILES[(2, 3)])
    data[data.index(b"g.npy") + 200] ^= 0xFF  # a byte of g's data: the zip's CRC no longer matches
    with pytest.raises(ValueError, match="chip.npz"):
        SimLab.load_physics(state_file(tmp_path, bytes(data)))


def meta_with(**changes):
    def change(state):
        meta = json.loads(str(state["meta"]))
        for key, value in changes.items():
            if value is KeyError:
                del meta[key]
            else:
                meta[key] = value
        state["meta"] = np.array(json.dumps(meta))
    return change


@pytest.mark.parametrize("change, named", [
    (lambda s: s.pop("meta"), "meta"), (lambda s: s.pop("g"), "'g'"),
    (lambda s: s.__setitem__("meta", np.array("not json")), "meta"),
    (lambda s: s.__setitem__("meta", np.array("[]")), "meta"),
    (meta_with(cols=KeyError), "cols"), (meta_with(rows="2"), "rows"), (meta_with(rows=0), "rows"),
    (meta_with(seed=-1), "seed"), (meta_with(now=None), "now"), (meta_with(rng=KeyError), "rng"),
    (meta_with(rng={"bit_generator": "PCG64"}), "rng"), (meta_with(rng=[]), "rng"),
    (lambda s: s.__setitem__("g", np.full((2, 3), np.nan)), "'g'"),
    (lambda s: s.__setitem__("g_lo", np.full((2, 3), np.inf)), "'g_lo'"),
    (lambda s: s.__setitem__("v_form", np.full((2, 3), -np.inf)), "'v_form'"),
    (lambda s: s.__setitem__("formed", np.ones((2, 3))), "'formed'"),
    (lambda s: s.__setitem__("g", np.full((2, 3), "x")), "'g'"),
    (lambda s: s.__setitem__("rate", np.ones(6)), "'rate'")])
def test_state_file_with_a_bad_entry_is_a_value_error_naming_file_and_key(tmp_path, change, named):
    # KeyError / TypeError out of from_state, or NaN, inf and a float 'formed' loaded as they were
    path = saved_state(tmp_path, change)
    with pytest.raises(ValueError) as error:
        SimLab.load_physics(path)
    assert "chip.npz" in str(error.value) and named in str(error.value)


def test_state_file_as_saved_still_loads_with_unformable_cells(tmp_path):
    path = saved_state(tmp_path, lambda s: s.__setitem__("v_form", np.full((2, 3), np.inf)))
    chip = SimLab.load_physics(path)
    assert chip.shape == (2, 3) and np.isinf(chip.v_form).all() and chip.clock.now == 12.5


def test_station_on_a_corrupt_state_file_is_a_station_error_naming_it(tmp_path):
    # the CLI reports StationError as bad input; a corrupt chip state came out as BadZipFile
    path = state_file(tmp_path, b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(StationError, match="chip.npz.*sim reset"):
        Station.open("sim", sim_state=path)


def test_set_value_huge_integer_past_a_limit_is_a_parameter_error():
    # the limit's message formatted the value with :g, a float conversion: OverflowError
    with pytest.raises(ParameterError, match="cycles=1000000000000000000000"):
        Parameter("cycles", "int", 1, maximum=1e6).validate(10 ** 400)
    with pytest.raises(ParameterError, match="cycles=0 is below its minimum 1"):
        Parameter("cycles", "int", 1, minimum=1).validate(0)


def test_state_file_member_marked_encrypted_is_a_value_error_naming_it(tmp_path):
    # a flipped flag bit of a zip member: zipfile's RuntimeError "is encrypted, password required"
    data = bytearray(STATE_FILES[(2, 3)])
    header = data.index(b"PK\x03\x04")
    data[header + 6] |= 0x01  # general purpose flag: encrypted
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 0x01
    with pytest.raises(ValueError, match="chip.npz"):
        SimLab.load_physics(state_file(tmp_path, bytes(data)))


def test_station_file_with_an_integer_of_5000_digits_is_a_station_error(tmp_path):
    # tomllib raises a plain ValueError (not TOMLDecodeError) for an integer int() refuses
    path = tmp_path / "big.toml"
    path.write_text(STATION_FILES["sim"].replace("rows = 4", "rows = " + "9" * 5000))
    with pytest.raises(StationError, match="big.toml"):
        load_station(str(path))


def test_device_file_with_an_integer_of_5000_digits_names_the_file(tmp_path):
    path = device_file(tmp_path, text=DEVICE_TEXT.replace("value = 0.0,", "value = " + "9" * 5000 + ",", 1).encode())
    with pytest.raises(ValueError, match=str(path)):
        DeviceParams.load(path)


@pytest.mark.parametrize("key", ["max_v_bl", "max_pulses"])
def test_station_limit_too_large_for_a_float_is_a_station_error(key):
    # math.isfinite() / float() of 10**400: OverflowError
    doc = _copy(STATION_DOCS["sim"])
    doc["safe_operating_area"][key] = 10 ** 400
    with pytest.raises(StationError, match=key):
        parse_station(doc, "fuzzed.toml")


def test_device_file_integer_too_large_for_a_float_names_file_and_key(tmp_path):
    # math.isfinite(10**400) / float(10**400): OverflowError
    path = device_file(tmp_path, lambda d: d["window"]["g_min"].__setitem__("value", 10 ** 400))
    with pytest.raises(ValueError, match="g_min") as error:
        DeviceParams.load(path)
    assert str(path) in str(error.value)


def test_state_file_time_too_large_for_a_float_names_file_and_key(tmp_path):
    path = saved_state(tmp_path, meta_with(now=10 ** 400))  # VirtualClock(float(10**400)): OverflowError
    with pytest.raises(ValueError, match="chip.npz.*now"):
        SimLab.load_physics(path)
