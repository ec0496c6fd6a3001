import pytest

from labctl.params import Parameter, ParameterError, parse_cli_value, resolve
from labctl.safety import SafeOperatingArea, SafetyError

P = (Parameter("v_stop", "float", 4.0, "V", minimum=0.1, maximum=5.0),
     Parameter("cycles", "int", 1, minimum=1),
     Parameter("targets", "floats", [1e-5]),
     Parameter("mode", "str", "a", choices=("a", "b")),
     Parameter("dual", "bool", False))


def test_defaults_fill_in_and_values_coerce():
    assert resolve(P, {"cycles": 3.0}, "proto") == {"v_stop": 4.0, "cycles": 3, "targets": [1e-5],
                                                     "mode": "a", "dual": False}


@pytest.mark.parametrize("values, message", [
    ({"v_stop": 9}, r"v_stop=9 V is above its maximum 5 V"),
    ({"v_stop": 0}, r"v_stop=0 V is below its minimum 0.1 V"),
    ({"cycles": 1.5}, r"cycles must be an integer"),
    ({"v_stop": "high"}, r"v_stop must be a number"),
    ({"dual": 1}, r"dual must be true or false"),
    ({"mode": "c"}, r"mode='c' is not one of a, b"),
    ({"targets": []}, r"targets must be a non-empty list"),
    ({"v_stp": 1}, r"proto has no parameter 'v_stp'"),
])
def test_bad_values_name_the_parameter_and_the_limit(values, message):
    with pytest.raises(ParameterError, match=message):
        resolve(P, values, "proto")


def test_cli_values_are_json_else_text():
    assert parse_cli_value("3.8") == 3.8
    assert parse_cli_value("[2e-5,5e-5]") == [2e-5, 5e-5]
    assert parse_cli_value("true") is True
    assert parse_cli_value("sgd") == "sgd"


def test_soa_check_names_the_limit():
    soa = SafeOperatingArea(max_v_bl=4.0, max_v_sl=4.0, max_v_wl=2.5, max_current=1e-3)
    assert soa.check("max_v_bl", -3.9, "v") == -3.9
    with pytest.raises(SafetyError, match=r"v_stop=9 V exceeds .*bit line <= 4 V \(max_v_bl\)"):
        soa.check("max_v_bl", 9, "v_stop")
    with pytest.raises(SafetyError):
        soa.check("max_current", float("nan"), "i")
