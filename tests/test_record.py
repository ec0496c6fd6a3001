"""Record and replay: a session's bytes become a driver-level test (labctl/record.py)."""
import json
from pathlib import Path

import pytest
from labctl.instruments.transport import InProcessTransport, InstrumentTimeout, Transport

from labctl.cli import main
from labctl.record import Recorder, Recording, RecordingTransport, ReplayMismatch, replay

RECORDINGS = Path(__file__).resolve().parents[1] / "docs" / "recordings"


@pytest.mark.parametrize("name", ["forming-virtual-lab.jsonl", "iv_sweep-virtual-lab.jsonl"])
def test_the_shipped_virtual_lab_recordings_replay(labctl_replay, name):
    recording = Recording(RECORDINGS / name)
    result = labctl_replay(RECORDINGS / name)
    assert result.summary == recording.result["summary"] and result.status == "completed"
    assert {"smu", "board"} <= set(recording.events)


def test_an_in_process_session_records_and_replays_with_the_cli(tmp_path, capsys):
    rec = tmp_path / "read_map.jsonl"
    assert main(["run", "read_map", "--station", "sim", "--sim-state", str(tmp_path / "c.npz"),
                 "--out", str(tmp_path / "d.h5"), "--record", str(rec)]) == 0
    recording = Recording(rec)
    assert recording.run == {"protocol": "read_map", "parameters": recording.run["parameters"]}
    writes = [e for e in recording.events["board"] if e["op"] == "write"]
    assert writes and all(e["t"] >= 0 for e in writes)
    capsys.readouterr()
    assert main(["replay", str(rec)]) == 0
    assert "same bytes and result" in capsys.readouterr().out


def mutated(src: Path, dst: Path, change) -> Path:
    lines = [json.loads(line) for line in src.read_text().splitlines()]
    change(lines)
    dst.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return dst


def test_a_different_byte_sent_is_a_mismatch_naming_the_instrument_and_event(tmp_path):
    def flip_first_smu_write(lines):
        event = next(e for e in lines if e.get("role") == "smu" and e.get("op") == "write" and "OUTP" in e["data"])
        event["data"] = event["data"].replace("OUTP", "OUTPUT")

    rec = mutated(RECORDINGS / "iv_sweep-virtual-lab.jsonl", tmp_path / "x.jsonl", flip_first_smu_write)
    with pytest.raises(ReplayMismatch, match=r"smu event \d+: recorded write .*OUTPUT.*replayed write"):
        replay(rec, tmp_path / "r.h5")


def test_a_different_result_is_a_mismatch(tmp_path, capsys):
    def other_result(lines):
        next(e for e in lines if "result" in e)["result"]["summary"]["points"] = -1

    rec = mutated(RECORDINGS / "iv_sweep-virtual-lab.jsonl", tmp_path / "y.jsonl", other_result)
    with pytest.raises(ReplayMismatch, match="differs from the recorded"):
        replay(rec, tmp_path / "r.h5")
    assert main(["replay", str(rec)]) == 1
    assert "differs" in capsys.readouterr().err


class _Twice:
    """A twin that answers every query twice (a duplicated reply)."""

    def handle(self, data: bytes) -> bytes:
        return b"1\n1\n"


class _Slow(Transport):
    """Answers a read only if its deadline allows waiting (as a socket read would)."""
    resource, timeout = "slow://", 5.0

    def write(self, data: bytes) -> None:
        pass

    def read(self, size: int) -> bytes:
        self._time_left()
        return b"x" * size

    def read_line(self, terminator: bytes = b"\n") -> bytes:
        self._time_left()
        return b"late"


def test_a_recorded_link_flushes_and_bounds_its_reads_through_the_instruments_transport(tmp_path):
    recorder = Recorder(tmp_path / "r.jsonl", {})
    try:
        link = RecordingTransport(InProcessTransport(_Twice()), "smu", recorder)
        link.write(b"*OPC?\n")
        assert link.read_line() == b"1"
        link.flush_input()  # the duplicate goes
        with pytest.raises(InstrumentTimeout):
            link.read_line()
        slow = RecordingTransport(_Slow(), "pulse", recorder)
        assert slow.timeout == 5.0 and slow.read_line() == b"late"
        with slow.limit(0), pytest.raises(InstrumentTimeout):
            slow.read_line()
    finally:
        recorder.close()
