"""Property-based fuzzing of every parser (tests/faults/fuzzkit.py says what each property is): the
SCPI matcher through the four SCPI twins, the 2600B's TSP, station / chip-map and device TOML,
`--set` values and chip-state files. A few deterministic examples each here (the hypothesis profile
labctl-fuzz-ci); bench/fuzz.py runs >= 10 000 inputs per parser."""
import fuzzkit
import pytest
from fuzzkit import FUZZ
from hypothesis import given

TARGETS = fuzzkit.targets()


def _fuzz_test(name: str):
    target = TARGETS[name]

    @FUZZ
    @given(target.strategy())
    def test(case):
        try:
            target.check(case)
        except fuzzkit.Hang as exc:
            pytest.fail(f"{name}: hang: {exc}")

    test.__name__ = f"test_fuzz_{name.replace(':', '_')}"
    return test


for _name in TARGETS:
    _test = _fuzz_test(_name)
    globals()[_test.__name__] = _test
