"""The SCPI header matcher and dispatcher shared by the virtual instruments."""
import pytest
from labctl.sim.scpi import ScpiError, ScpiTwin, compile_header, float_in, split_quoted, to_keyword, unquote


class Thing(ScpiTwin):
    """A minimal instrument: a source level, an NPLC, a two-channel output and an echo."""

    def __init__(self):
        super().__init__("ACME,THING,1,1.0")
        self.level = 0.0
        self.nplc = 1.0
        self.outputs = {1: False, 2: False}
        self.register_setting(":SOURce#:VOLTage[:LEVel][:IMMediate][:AMPLitude]", "level",
                              float_in(-10, 10))
        self.register_setting("[:SENSe#]:CURRent[:DC]:NPLCycles", "nplc", float_in(0.01, 10))
        self.register(":OUTPut#[:STATe]", self._output, nargs=1, suffix_max=2)
        self.register(":OUTPut#[:STATe]?", lambda call: str(int(self.outputs[call.suffixes[0]])),
                      suffix_max=2)
        self.register(":TEST:ECHO?", lambda call: "|".join(call.params), nargs=(0, 5))

    def _output(self, call):
        self.outputs[call.suffixes[0]] = call.params[0].upper() in ("1", "ON")

    def reset(self):
        self.level = 0.0


def ask(thing: ScpiTwin, line: str) -> str:
    return thing.handle(line.encode() + b"\n").decode()


def errors(thing: ScpiTwin) -> list[str]:
    out = []
    while (reply := ask(thing, ":SYST:ERR?")) != '0,"No error"\n':
        out.append(reply.strip())
    return out


@pytest.mark.parametrize("header", [
    ":SOURce:VOLTage:LEVel:IMMediate:AMPLitude", ":SOUR:VOLT", "SOUR:VOLT", ":sour:volt",
    ":Source:Volt:Lev", ":SOUR1:VOLT:AMPL", ":SOURCE:VOLTAGE:IMM", ":SOUR:VOLT:LEV:IMM:AMPL",
])
def test_header_forms_accepted(header):
    assert compile_header(":SOURce#:VOLTage[:LEVel][:IMMediate][:AMPLitude]").fullmatch(
        ":" + header.upper().lstrip(":"))


@pytest.mark.parametrize("header", [
    ":SOU:VOLT", ":SOURC:VOLT", ":SOURCES:VOLT", ":VOLT", ":SOUR:VOLT:AMPL:LEV", ":SOUR:VOLT:",
    ":SOUR:CURR",
])
def test_header_forms_refused(header):
    assert not compile_header(":SOURce#:VOLTage[:LEVel][:IMMediate][:AMPLitude]").fullmatch(
        ":" + header.upper().lstrip(":"))


def test_set_and_query_short_long_any_case():
    thing = Thing()
    assert ask(thing, ":SOURce:VOLTage:LEVel 1.5") == ""  # a command never replies
    assert ask(thing, "sour:volt?") == "1.5\n"
    assert ask(thing, "SOURCE1:VOLTAGE:IMMEDIATE:AMPLITUDE -2e-1;:SOUR:VOLT:AMPL?") == "-0.2\n"


def test_optional_first_node_and_suffixes():
    thing = Thing()
    ask(thing, ":CURR:NPLC 0.5")
    assert ask(thing, ":SENS1:CURR:DC:NPLC?") == "0.5\n"
    ask(thing, ":OUTP2 ON")
    assert ask(thing, ":OUTP1?;:OUTP2:STAT?") == "0;1\n"
    assert ask(thing, ":OUTP3 ON") == ""
    assert ask(thing, ":SENS2:CURR:NPLC 1") == ""
    assert errors(thing) == ['-114,"Header suffix out of range"'] * 2


def test_several_commands_in_one_line_with_joined_replies():
    thing = Thing()
    assert ask(thing, "*IDN?;:SOUR:VOLT 2;:SOUR:VOLT?;*OPC?") == "ACME,THING,1,1.0;2.0;1\n"


def test_empty_pieces_and_rooted_common_commands():
    thing = Thing()
    ask(thing, ":BOGUS")
    assert ask(thing, "*RST;:stat:pres;:*CLS;") == ""
    assert errors(thing) == []
    assert ask(thing, ";;*OPC?;;") == "1\n"


def test_undefined_header():
    thing = Thing()
    assert ask(thing, ":SOUR:CURR 1;:SOUR:VOLT?") == "0.0\n"
    assert ask(thing, ":SOUR:CURR?;:TEST:ECHO") == ""  # ECHO is registered as a query only
    assert errors(thing) == ['-113,"Undefined header"'] * 3


def test_parameter_errors_change_nothing():
    thing = Thing()
    ask(thing, ":SOUR:VOLT 1")
    for line in (":SOUR:VOLT 11", ":SOUR:VOLT abc", ":SOUR:VOLT", ":SOUR:VOLT 1,2", ":SOUR:VOLT 1e",
                 ":SOUR:VOLT nan", ":SOUR:VOLT 1_0"):
        ask(thing, line)
    assert ask(thing, ":SOUR:VOLT?") == "1.0\n"
    assert [e.split(",")[0] for e in errors(thing)] == ["-222", "-104", "-109", "-108", "-104",
                                                         "-104", "-104"]


def test_quoted_parameters_keep_separators():
    thing = Thing()
    assert ask(thing, ":TEST:ECHO? \"a,b;c\", 'd\"e', x") == "\"a,b;c\"|'d\"e'|x\n"
    assert ask(thing, ":TEST:ECHO? \"open") == ""
    assert ask(thing, ":TEST:ECHO? 1,,2") == ""
    assert errors(thing) == ['-151,"Invalid string data"', '-109,"Missing parameter"']


def test_whitespace_around_header_and_parameters():
    thing = Thing()
    assert ask(thing, "  :TEST:ECHO?\t 1 ,  2  ;  *OPC?  \r") == "1|2;1\n"


def test_partial_lines_are_buffered_and_device_clear_drops_them():
    thing = Thing()
    assert thing.handle(b"*ID") == b""
    assert thing.handle(b"N?\n*OPC?\n:SOUR") == b"ACME,THING,1,1.0\n1\n"
    thing.device_clear()
    assert thing.handle(b"*OPC?\n") == b"1\n"


def test_error_count_queue_overflow_and_cls():
    thing = Thing()
    thing.errors.capacity = 3
    for _ in range(5):
        ask(thing, ":NOPE")
    assert ask(thing, ":SYST:ERR:COUN?") == "3\n"
    assert ask(thing, ":SYST:ERR:NEXT?") == '-113,"Undefined header"\n'
    assert errors(thing) == ['-113,"Undefined header"', '-350,"Queue overflow"']
    ask(thing, ":NOPE;*CLS")
    assert ask(thing, ":SYST:ERR:COUN?") == "0\n"


def test_helpers():
    assert split_quoted("a, 'b,c' ,d", ",") == ["a", "'b,c'", "d"]
    assert unquote('"defbuffer1"') == "defbuffer1" and unquote("READ") == "READ"
    assert to_keyword("fix", "AUTO", "BEST", "FIXed") == "FIXed"
    assert to_keyword("CURR:DC", "VOLTage[:DC]", "CURRent[:DC]") == "CURRent[:DC]"
    with pytest.raises(ScpiError) as info:
        to_keyword("FIXE", "FIXed")
    assert info.value.code == -224
    with pytest.raises(ValueError):
        compile_header(":SOUR-ce")


class Meter(ScpiTwin):
    """A numeric setting with MINimum / MAXimum / DEFault, as register_number makes it."""

    def __init__(self):
        super().__init__("ACME,METER,1,1.0")
        self.nplc = 1.0
        self.register_number("[:SENSe#]:NPLCycles", "nplc", 0.01, 10.0, 1.0)


@pytest.mark.parametrize("line, reply", [
    (":NPLC?", "+1.000000E+00\n"), (":NPLC? MIN", "+1.000000E-02\n"), (":NPLC? maximum", "+1.000000E+01\n"),
    (":SENS:NPLC? DEF", "+1.000000E+00\n"), (":NPLC 0.5;:NPLC?", "+5.000000E-01\n"),
    (":NPLC MAX;:NPLC?", "+1.000000E+01\n"), (":NPLC 5;:NPLC DEFault;:NPLC?", "+1.000000E+00\n"),
])
def test_numbers_take_minimum_maximum_default(line, reply):
    assert ask(Meter(), line) == reply


@pytest.mark.parametrize("line, code", [(":NPLC? 5", -224), (":NPLC? MIN, MAX", -108), (":NPLC 20", -222),
                                        (":NPLC LOTS", -104)])
def test_a_bad_number_or_bound_word_is_queued(line, code):
    meter = Meter()
    assert ask(meter, line) == ""
    assert ask(meter, ":SYST:ERR?").startswith(f"{code},") and meter.nplc == 1.0


def test_status_registers_follow_ieee_488_2():
    """*ESR? reports (and clears) the event bits an error of each class and *OPC set; *STB? has
    bit 2 while the error queue holds an entry, bit 5 for an event *ESE enables, bit 6 when *SRE
    enables a set bit; *CLS clears the queue and the events, not the masks."""
    meter = Meter()
    assert ask(meter, "*ESR?;*STB?") == "0;0\n"
    ask(meter, ":NOPE")  # -113: command error, bit 5
    ask(meter, ":NPLC 20")  # -222: execution error, bit 4
    assert ask(meter, "*STB?") == "4\n"
    ask(meter, "*ESE 48;*SRE 32")
    assert ask(meter, "*ESE?;*SRE?;*STB?") == "48;32;100\n"
    assert ask(meter, "*ESR?;*ESR?;*STB?") == "48;0;4\n"
    ask(meter, "*OPC;*CLS")
    assert ask(meter, "*STB?;*ESR?;*ESE?") == "0;0;48\n"
    ask(meter, "*OPC")
    assert ask(meter, "*ESR?") == "1\n"
