"""Parameter declarations and checks that several protocols share."""
import numpy as np

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


# -- pulses and cell blocks (pulse_response, endurance, variability_map, write_verify, ...) -----


def cell_block_parameters(all_cells_default: bool) -> tuple[Parameter, ...]:
    """row, col, n_rows, n_cols, all_cells: a block of cells starting at (row, col), or the
    whole array when all_cells is true (the block parameters are then ignored)."""
    return (
        ROW,
        COL,
        Parameter("n_rows", "int", 1, "", minimum=1, doc="rows (word lines) in the block, from `row`"),
        Parameter("n_cols", "int", 1, "", minimum=1, doc="columns (BL/SL pairs) in the block, from `col`"),
        Parameter("all_cells", "bool", all_cells_default, "",
                  doc="every cell of the array (row, col, n_rows and n_cols are then ignored)"),
    )


def check_block(params: dict, config) -> None:
    """Refuse a block that does not fit on the chip (nothing to check with all_cells)."""
    if params["all_cells"]:
        return
    check_cell(params, config)
    rows, cols = config.chip.rows, config.chip.cols
    if params["row"] + params["n_rows"] > rows:
        raise ParameterError(f"row={params['row']} + n_rows={params['n_rows']} runs past the chip's {rows} rows")
    if params["col"] + params["n_cols"] > cols:
        raise ParameterError(f"col={params['col']} + n_cols={params['n_cols']} runs past the chip's {cols} columns")


def selected_block(params: dict, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(row0, col0, n_rows, n_cols) of the cells a run works on."""
    if params["all_cells"]:
        return 0, 0, shape[0], shape[1]
    return params["row"], params["col"], params["n_rows"], params["n_cols"]


def block_cells(block: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the block's cells, row-major (the order of read_block's values)."""
    r0, c0, n_rows, n_cols = block
    rows, cols = np.divmod(np.arange(n_rows * n_cols), n_cols)
    return rows + r0, cols + c0


def block_cell_list(block: tuple[int, int, int, int]) -> np.ndarray:
    """(n_rows * n_cols, 2) row, col of the block's cells, row-major."""
    return np.stack(block_cells(block), axis=1)


def read_block(xbar, block: tuple[int, int, int, int], v_read: float, v_gate: float) -> np.ndarray:
    """Conductance (S) of the block's cells in one board read, flattened row-major."""
    return np.asarray(xbar.read_map(v_read, v_gate, block=block), dtype=float).ravel()


def burst_each_cell(xbar, rows: np.ndarray, cols: np.ndarray, amplitude: float, width: float,
                    count: int, v_gate: float, which: np.ndarray | None = None) -> None:
    """`count` pulses (one burst of the pulse generator) on each cell, one cell after the other;
    `which` (bool per cell) restricts it to some of them. (The board-timed pulses of
    write-verify are Crossbar.pulse_cells.)"""
    for k in np.flatnonzero(which) if which is not None else range(len(rows)):
        xbar.pulse(int(rows[k]), int(cols[k]), amplitude, width, count, v_gate)


V_SET = Parameter("v_set", "float", 1.35, "V", minimum=0.05, soa="max_v_bl",
                  doc="SET pulse amplitude V_BL - V_SL (published write-verify SET: +1.35 V)")
V_RESET = Parameter("v_reset", "float", -1.5, "V", maximum=-0.05, soa="max_v_sl",
                    doc="RESET pulse amplitude V_BL - V_SL, negative (published: -1.5 V)")
WIDTH = Parameter("width", "float", 100e-9, "s", minimum=1e-9, soa="max_pulse_width",
                  doc="SET/RESET pulse width (not published; a sister device switches at 60 ns)")
