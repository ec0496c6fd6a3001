"""Faults injected on loopback: real protocols on the 4x8 virtual lab, each instrument behind a
fault-injecting proxy (tests/faults/proxy.py), with 1 s timeouts in the station file.

For every fault kind: the run ends within the timeout + 1 s with its status and an error naming
the instrument and what happened, or (a fault the retry policy absorbs) completes with the data
of a clean run; the rows acquired before the fault are in the file (the clean run's rows, up to
the fault), which opens cleanly; the instruments that still answer are in their safe state,
asked over their own protocol on the lab's own ports (not through the proxy, not labctl's
memory); a dead one is named in the safe state's error, and the next open of the station puts
it right. Then the retry policy itself (docs/fpga-protocol.md, "Retry"): a lost reply to an
idempotent query or to a board request is recovered, a state-changing request is executed
exactly once, and a query that is not idempotent is never repeated.
"""
import json
import struct

import numpy as np
import pytest
from labctl.instruments.base import InstrumentError
from labctl.instruments.fpga import FpgaBoard
from labctl.instruments.fpga_wire import Command, encode_frame
from labctl.instruments.keithley2450 import Keithley2450
from labctl.instruments.transport import InProcessTransport, InstrumentTimeout, TransportError
from labctl.sim.lab import SimLab
from labctl.sim.physics import ArrayPhysics
from proxy import Fault, FaultLab, ask_scpi, run_with_fault

from fakes import ScriptedTransport
from labctl.station import ChipMap, Station, load_station
from labctl.store import load_run

TIMEOUT = 1.0
BOUND = TIMEOUT + 1.0  # s: from the fault to the end of the run, safe state and record included
IV = ("iv_sweep", {"cycles": 2})
FORMING = ("forming", {"v_start": 2.9})
PULSES = ("pulse_response", {"n_pulses": 4, "cycles": 1, "n_cols": 2})
# SMU replies in an iv_sweep of two cycles: cycle 1 :SYST:ERR? (setup), :SYST:ERR? (sweep), *OPC?,
# :TRAC:ACT?, :TRAC:DATA?; cycle 2 (setup and sweep kept, only re-armed) *OPC?, :TRAC:ACT?, :TRAC:DATA?
SYST_ERR, TRAC_DATA, CYCLE2_ACT = 0, 4, 6
# Board requests in forming: per row one READ_BLOCK, then per cell RELEASE_ALL, ROUTE, SET_DAC, ROUTE
ROW2_READ = 1 + 8 * 4


@pytest.fixture
def lab(tmp_path):
    with FaultLab(tmp_path / "lab", timeout=TIMEOUT) as lab:
        yield lab


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The data of each protocol run without a fault on an identical lab (seed 3)."""
    cache = {}

    def data(protocol: str, params: dict) -> dict:
        key = (protocol, tuple(sorted(params.items())))
        if key not in cache:
            folder = tmp_path_factory.mktemp("clean")
            with FaultLab(folder / "lab", timeout=TIMEOUT) as lab:
                outcome = run_with_fault(lab, protocol, params, None, None, folder / "clean.h5")
                assert outcome.status == "completed", outcome.error
                cache[key] = load_run(folder / "clean.h5", outcome.run_id)["data"], outcome.summary
        return cache[key]

    return data


def run(lab, tmp_path, experiment, role, fault):
    protocol, params = experiment
    return run_with_fault(lab, protocol, params, role, fault, tmp_path / "run.h5")


def assert_rows_are_the_clean_runs_up_to_the_fault(outcome, tmp_path, clean, experiment):
    """Every row reported before the end is in the file, and they are the clean run's first rows."""
    data = load_run(tmp_path / "run.h5", outcome.run_id)["data"]
    reference, _ = clean(*experiment)
    for table, n in outcome.rows_in_file.items():
        assert n >= outcome.rows_reported.get(table, 0), table
        assert same_rows(data[table], reference[table][:n]), table


def same_rows(a, b) -> bool:
    """Equal arrays, NaN included (byte for byte: the same computation gives the same NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_ended_clearly(outcome, *words):
    assert outcome.fired and outcome.status == "failed"
    for word in words:
        assert word in outcome.error, f"{word!r} not in {outcome.error!r}"
    assert outcome.after_fault_s <= BOUND, f"{outcome.after_fault_s:.2f} s after the fault: {outcome.error}"


def assert_recovered(outcome, tmp_path, clean, experiment):
    """The fault fired and the run completed with exactly the clean run's data and summary (a
    request executed twice, or a reply read out of turn, would change them)."""
    assert outcome.fired and outcome.status == "completed", outcome.error
    data = load_run(tmp_path / "run.h5", outcome.run_id)["data"]
    reference, summary = clean(*experiment)
    assert json.dumps(outcome.summary, sort_keys=True) == json.dumps(summary, sort_keys=True)
    for name, values in reference.items():
        assert same_rows(data[name], values), name


def assert_the_next_open_makes_it_safe(lab):
    """The instrument the run could not reach is left as it was; the next open of the station
    (on the lab's own ports) finds what is live and puts it in its safe state."""
    with Station(load_station(str(lab.station_file_direct))):
        pass
    assert lab.unsafe() == {}


# -- (a) the server is killed: connection reset ------------------------------------------------

def test_smu_killed_mid_sweep(lab, tmp_path, clean):
    outcome = run(lab, tmp_path, IV, "smu", Fault("kill", at=CYCLE2_ACT))
    assert_ended_clearly(outcome, "smu at TCPIP0::", "connection", "safe state failed: smu")
    assert outcome.rows_in_file["iv"] > 0
    assert_rows_are_the_clean_runs_up_to_the_fault(outcome, tmp_path, clean, IV)
    assert set(lab.unsafe()) <= {"smu"}  # the board and the generator were made safe
    assert_the_next_open_makes_it_safe(lab)


def test_board_killed_mid_frame(lab, tmp_path, clean):
    """The board's link dies a third of the way through a request frame, the READ_BLOCK of the
    second row (found here: the board twin kept the partial frame and took the next client's
    requests for the rest of it: no reply, ever)."""
    outcome = run(lab, tmp_path, FORMING, "board", Fault("kill", at=ROW2_READ, direction="request", partial=0.3))
    assert_ended_clearly(outcome, "board at socket://", "connection", "safe state failed: board")
    assert_rows_are_the_clean_runs_up_to_the_fault(outcome, tmp_path, clean, FORMING)
    assert set(lab.unsafe()) <= {"board"}  # and the board answers on its own port
    assert_the_next_open_makes_it_safe(lab)


def test_smu_closed_mid_sweep(lab, tmp_path, clean):
    """An orderly close (FIN) instead of a reset."""
    outcome = run(lab, tmp_path, IV, "smu", Fault("close", at=TRAC_DATA))
    assert_ended_clearly(outcome, "smu at TCPIP0::", "closed", "safe state failed: smu")
    assert set(lab.unsafe()) <= {"smu"}


def test_the_next_open_turns_off_a_pulse_generator_left_on(lab):
    assert ask_scpi(lab.direct["pulse"], ":OUTP1 ON;:OUTP1?") == ["1"]
    with Station(load_station(str(lab.station_file_direct))) as station:
        assert any("pulse" in found or "generator" in found for found in station.found_live)
    assert lab.unsafe() == {}


# -- (b) the server freezes: no reply ----------------------------------------------------------

def test_smu_frozen_mid_sweep(lab, tmp_path, clean):
    """(found here: the safe state's writes to the frozen SMU went unanswered and the run's record
    did not say the SMU was never made safe)"""
    outcome = run(lab, tmp_path, IV, "smu", Fault("freeze", at=CYCLE2_ACT))
    assert_ended_clearly(outcome, "smu at TCPIP0::", "no reply", "safe state failed: smu")
    assert_rows_are_the_clean_runs_up_to_the_fault(outcome, tmp_path, clean, IV)
    assert set(lab.unsafe()) <= {"smu"}


def test_board_frozen_mid_forming(lab, tmp_path, clean):
    """(found here: the safe state's RELEASE_ALL to the frozen board waited a second full
    timeout, 2 s in all)"""
    outcome = run(lab, tmp_path, FORMING, "board", Fault("freeze", at=20))
    assert_ended_clearly(outcome, "board at socket://", "no reply", "safe state failed: board")
    assert_rows_are_the_clean_runs_up_to_the_fault(outcome, tmp_path, clean, FORMING)
    assert set(lab.unsafe()) <= {"board"}


def test_pulse_generator_frozen_mid_pulse_response(lab, tmp_path, clean):
    outcome = run(lab, tmp_path, PULSES, "pulse", Fault("freeze", at=1))
    assert_ended_clearly(outcome, "pulse at TCPIP0::", "no reply", "safe state failed: pulse")
    assert_rows_are_the_clean_runs_up_to_the_fault(outcome, tmp_path, clean, PULSES)
    assert set(lab.unsafe()) <= {"pulse"}


def test_an_smu_frozen_on_the_last_writes_of_a_run_is_reported(lab, tmp_path, clean):
    smu = lab.proxies["smu"]
    before = smu.messages["request"]
    run(lab, tmp_path, IV, None, None)  # the same run without a fault: how many SMU requests
    n = smu.messages["request"] - before
    outcome = run(lab, tmp_path, IV, "smu", Fault("freeze", at=n - 4, direction="request"))  # the cell's source_off
    assert outcome.fired
    assert outcome.status == "failed" and "smu at " in outcome.error, outcome.error


# -- (c) a garbage, truncated or duplicated SCPI reply -----------------------------------------

def test_garbage_reply_to_a_query_that_is_not_repeated(lab, tmp_path, clean):
    """:SYST:ERR? pops the error queue: never repeated; the garbage is named (found here: a
    bare UnicodeDecodeError naming neither the instrument nor the query)."""
    outcome = run(lab, tmp_path, IV, "smu", Fault("garbage", at=SYST_ERR))
    assert_ended_clearly(outcome, "smu at TCPIP0::", "unreadable reply", ":SYST:ERR?")
    assert "safe state failed" not in outcome.error
    assert lab.unsafe() == {}


@pytest.mark.parametrize("kind", ["garbage", "truncate"])
def test_a_spoilt_reply_to_an_idempotent_query_is_asked_again(lab, tmp_path, clean, kind):
    outcome = run(lab, tmp_path, IV, "smu", Fault(kind, at=TRAC_DATA))
    assert_recovered(outcome, tmp_path, clean, IV)
    assert lab.unsafe() == {}


def test_a_truncated_reply_to_a_query_that_is_not_repeated(lab, tmp_path, clean):
    outcome = run(lab, tmp_path, IV, "smu", Fault("truncate", at=SYST_ERR))
    assert_ended_clearly(outcome, "smu at TCPIP0::", "no reply", ":SYST:ERR?")
    assert lab.unsafe() == {}


def test_a_duplicated_reply_is_dropped_before_the_next_query(lab, tmp_path, clean):
    """(found here: the next query read the duplicate, one reply out of step: :TRAC:DATA? was
    answered with :TRAC:ACT?'s count)"""
    outcome = run(lab, tmp_path, IV, "smu", Fault("duplicate", at=1, count=3))
    assert_recovered(outcome, tmp_path, clean, IV)


# -- (d) board frames: flipped bytes, dropped or duplicated frames -----------------------------

@pytest.mark.parametrize("direction, words", [("reply", ("CRC mismatch",)),
                                             ("request", ("received a corrupt", "not executed"))])
def test_a_flipped_bit_in_a_board_frame_fails_its_crc(lab, tmp_path, clean, direction, words):
    """A bit flipped in the payload: the CRC fails; a corrupt reply, or the board's BAD_CRC
    answer to a corrupt request, ends the run (a resend is for silence only)."""
    outcome = run(lab, tmp_path, FORMING, "board", Fault("flip", at=20, direction=direction, position=-3))
    assert_ended_clearly(outcome, "board at socket://", *words)
    assert "safe state failed" not in outcome.error
    assert_rows_are_the_clean_runs_up_to_the_fault(outcome, tmp_path, clean, FORMING)
    assert lab.unsafe() == {}


@pytest.mark.parametrize("kind, direction", [("drop", "reply"), ("drop", "request"), ("duplicate", "reply"),
                                             ("duplicate", "request"), ("truncate", "request")])
def test_a_lost_or_duplicated_board_frame_is_recovered_exactly_once(lab, tmp_path, clean, kind, direction):
    """A lost frame: the request is resent with its sequence number after the timeout, and the
    board answers a duplicate from its last reply; a duplicated reply is skipped (found here: a
    duplicated frame ended the run, 'reply has seq 6, expected 7'). A request cut short
    never reaches the board as a frame: the resend does (found here:
    the board took the resend for the rest of the truncated frame, answered BAD_CRC, "not
    executed", then found the resend inside it and executed it; it now drops a partial frame
    after line silence). The data equal a clean run's: a READ_BLOCK executed twice would have
    drawn its read noise twice."""
    executed = count_board_requests(lab)
    outcome = run(lab, tmp_path, FORMING, "board", Fault(kind, at=13, direction=direction))
    assert_recovered(outcome, tmp_path, clean, FORMING)
    assert executed["reads"] == clean_reads(clean)
    assert lab.unsafe() == {}


def test_a_board_reply_lost_twice_ends_the_run(lab, tmp_path, clean):
    outcome = run(lab, tmp_path, FORMING, "board", Fault("drop", at=13, count=2))
    assert_ended_clearly(outcome, "board at socket://", "no reply", "resent once")
    assert "safe state failed" not in outcome.error  # the link works again for the safe state
    assert lab.unsafe() == {}


def count_board_requests(lab) -> dict:
    """Count the READ_BLOCKs the lab's board twin executes."""
    board, executed = lab.sim.board, {"reads": 0}
    read = board._handlers[Command.READ_BLOCK]

    def counted(payload):
        executed["reads"] += 1
        return read(payload)

    board._handlers[Command.READ_BLOCK] = counted
    return executed


def clean_reads(clean) -> int:
    """READ_BLOCKs in a clean forming run: one per array row."""
    reference, _ = clean(*FORMING)
    return len(np.unique(reference["cells"]["row"]))


# -- the retry policy at the driver ------------------------------------------------------------

class LossyTransport(InProcessTransport):
    """In-process link that loses, while `losses` > 0, the reply to each write that `lose` (a
    predicate on the bytes written) selects, or with `lost="request"` the write itself;
    `writes` keeps everything written."""

    def __init__(self, instrument, lose, losses: int = 1, lost: str = "reply"):
        super().__init__(instrument, "lossy://")
        self.lose, self.losses, self.lost, self.writes = lose, losses, lost, []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        selected = self.losses > 0 and self.lose(bytes(data))
        self.losses -= selected
        if selected and self.lost == "request":
            return
        before = len(self._rx)
        super().write(data)
        if selected:
            del self._rx[before:]


@pytest.fixture
def sim():
    physics = ArrayPhysics(4, 8, seed=1)
    chip = ChipMap.default_layout(4, 8)
    return SimLab(physics, chip.wl_channels, chip.bl_channels, chip.sl_channels, link_baud=None)


def test_an_idempotent_query_is_retried_once_after_a_lost_reply(sim):
    link = LossyTransport(sim.smu, lambda data: data == b":SOUR:VOLT?\n")
    smu = Keithley2450(link, "smu")
    smu.check_identity()
    smu.source_voltage = 0.25
    assert smu.source_voltage == 0.25
    assert link.writes.count(b":SOUR:VOLT?\n") == 2  # asked again, followed by *IDN? to resync
    assert link.writes[-1] == b"*IDN?\n"


def test_a_measurement_whose_reply_was_lost_is_not_repeated(sim):
    link = LossyTransport(sim.smu, lambda data: data == b":READ?\n")
    smu = Keithley2450(link, "smu")
    smu.check_identity()
    with pytest.raises(InstrumentTimeout, match=r"smu at lossy://: ':READ\?': no reply"):
        smu.measure_current()
    assert link.writes.count(b":READ?\n") == 1
    assert smu.output_enabled is False  # the next query is answered in turn


def test_a_query_answered_with_garbage_is_named(sim):
    smu = Keithley2450(InProcessTransport(lambda: None, "garbage://"), "smu")
    smu.transport.instrument = type("Garbage", (), {"handle": lambda self, data: b"\xff\xfe\n"})()
    with pytest.raises(InstrumentError, match=r"smu at garbage://: unreadable reply .* to ':READ\?'"):
        smu.measure_current()


def board_with(sim, lose, losses=1, lost="reply"):
    link = LossyTransport(sim.board, lose, losses, lost)
    board = FpgaBoard(link, "board")
    chip = ChipMap.default_layout(4, 8)
    board.configure_map(chip.wl_channels, chip.bl_channels, chip.sl_channels)
    return board, link


def count_executions(sim, cmd: Command) -> list:
    executed, handler = [], sim.board._handlers[cmd]
    sim.board._handlers[cmd] = lambda payload: executed.append(payload) or handler(payload)
    return executed


def test_a_board_query_is_resent_with_its_sequence_number_after_a_lost_reply(sim):
    board, link = board_with(sim, lambda data: data[2] == Command.STATUS)
    modes, dac = board.status()
    assert len(modes) == 20 and not dac.any()
    assert link.writes[-1] == link.writes[-2]  # the same frame, the same seq


@pytest.mark.parametrize("lost", ["reply", "request"])
def test_a_state_changing_board_request_is_executed_exactly_once(sim, lost):
    executed = count_executions(sim, Command.PULSE_CELLS)
    board, link = board_with(sim, lambda data: data[2] == Command.PULSE_CELLS, lost=lost)
    board.pulse_cells([1], [2], [1.6], [1e-6], v_gate=1.2, period=2e-6)
    sent = [w for w in link.writes if w[2] == Command.PULSE_CELLS]
    assert len(sent) == 2 and sent[0] == sent[1]  # resent once, same seq
    assert len(executed) == 1  # executed once: the duplicate was answered from the last reply


def test_the_board_answers_a_duplicate_from_its_last_reply_and_executes_anything_else(sim):
    executed = count_executions(sim, Command.PULSE_CELLS)
    board = sim.board
    payload = struct.pack("<Hff", 1, 1.2, 2e-6) + struct.pack("<HHff", 0, 0, 1.5, 1e-6)
    chip = ChipMap.default_layout(4, 8)
    mapping = np.array([4, 8, *chip.wl_channels, *chip.bl_channels, *chip.sl_channels], "<u2").tobytes()
    assert board.handle(encode_frame(0, Command.CONFIGURE_MAP, mapping))[5] == 0
    first = board.handle(encode_frame(1, Command.PULSE_CELLS, payload))
    assert board.handle(encode_frame(1, Command.PULSE_CELLS, payload)) == first  # a duplicate
    assert len(executed) == 1
    board.handle(encode_frame(2, Command.PULSE_CELLS, payload))  # a new request, same bytes
    board.handle(encode_frame(2, Command.PULSE_CELLS, payload[:-1] + b"\x00"))  # same seq, other bytes
    assert len(executed) == 3


def test_a_board_that_does_not_answer_fails_the_safe_state_within_the_grace(sim):
    """After a request that got no reply (resent once), the next request, e.g. the safe state's
    RELEASE_ALL, waits only the retry grace while the link stays silent."""
    board, link = board_with(sim, lambda data: True, losses=0)
    link.losses = 10
    with pytest.raises(InstrumentTimeout, match="resent once"):
        board.status()
    with pytest.raises(InstrumentTimeout, match="had not answered since"):
        board.release_all()
    link.losses = 0
    board.release_all()  # it answers again: back to normal


def test_transport_errors_name_the_instrument(sim):
    class Dead(InProcessTransport):
        def write(self, data):
            raise TransportError(f"{self.resource}: connection reset by the instrument")

    smu = Keithley2450(Dead(sim.smu, "dead://"), "smu")
    with pytest.raises(TransportError, match=r"smu at dead://: ':OUTP\?': connection reset"):
        _ = smu.output_enabled
    with pytest.raises(TransportError, match="board at dead://: STATUS"):
        FpgaBoard(Dead(sim.board, "dead://"), "board").status()


def test_after_a_timeout_the_fresh_decoder_keeps_its_limits():
    """(found reading the driver: after a timeout it made a FrameDecoder() without the limits, so
    a false 0xA6 in line noise claiming a megabyte held up every later reply until the timeout)"""
    def ack(seq):
        return encode_frame(seq, Command.RELEASE_ALL | 0x80, b"\x00")

    false_long_start = bytes.fromhex("a6 01 93 00 00 10 00")  # "1 MiB follow" for a RELEASE_ALL reply
    link = ScriptedTransport([(encode_frame(0, Command.RELEASE_ALL), b""), (encode_frame(0, Command.RELEASE_ALL), b""),
                              (encode_frame(1, Command.RELEASE_ALL), false_long_start + ack(1))],
                             "script://board", binary=True)
    board = FpgaBoard(link, "board")
    with pytest.raises(InstrumentTimeout):
        board.release_all()
    board.release_all()
