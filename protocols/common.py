"""Parameter declarations and checks that several protocols share."""
from labctl.params import Parameter, ParameterError

V_READ = Parameter("v_read", "float", 0.2, "V", minimum=0.01, maximum=1.0, soa="max_v_bl",
                   doc="read voltage on the bit line (well below any switching)")
V_GATE = Parameter("v_gate", "float", 1.2, "V", minimum=0.0, soa="max_v_wl",
                   doc="word-line (selector gate) voltage; it sets the transistor's current limit")
ROW = Parameter("row", "int", 0, "", minimum=0, doc="word line of the cell (0-based)")
COL = Parameter("col", "int", 0, "", minimum=0, doc="bit/source-line pair of the cell (0-based)")


def check_cell(params: dict, config) -> None:
    rows, cols = config.chip.rows, config.chip.cols
    if params["row"] >= rows:
        raise ParameterError(f"row={params['row']} is above its maximum {rows - 1} (chip has {rows} rows)")
    if params["col"] >= cols:
        raise ParameterError(f"col={params['col']} is above its maximum {cols - 1} (chip has {cols} columns)")
