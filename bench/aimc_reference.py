"""Reference MVM benchmark on the simulator: the published 64x64 inference error, end to end.

DESIGN.md section 2: a 64x64 array, one device per weight, weights in [-1, 1] mapped affinely to
the window, inputs in [-1, 1], 0.2 % write-verify, no IR drop, no quantization (ideal periphery):
RMSE against the exact product ~0.05 at 1 s and ~0.25 at 10 years after programming.

Runs, through the protocols on a simulated sim:NxN station: forming, then `mvm` at t_after = 1 s,
then `mvm` at t_after = 10 years with the same seed (the same weights: the second write-verify
starts from cells already near their targets, so it is quick). RMSE is the mvm protocol's
(protocols/mvm.py): sqrt(mean((y_meas - y_true)^2)) with weights and inputs at full scale 1.

Prints one JSON object: per time, the mvm summary's rmse_forward / rmse_backward, relative
errors, programming stats; the reference values, the +-25 % band and whether each forward RMSE
is inside it; wall time of every stage (s).
Usage: python bench/aimc_reference.py [--size 64] [--seed 7] [--batch 100] [--g-lo S] [--g-hi S] [--uart]
                                      [--state FILE]
       (--state keeps the chip between invocations: forming is skipped when already done)
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from labctl.engine import run_protocol
from labctl.station import Station

TEN_YEARS = 3.15e8  # s
REFERENCE = {1.0: 0.05, TEN_YEARS: 0.25}  # RMSE, DESIGN.md section 2
TOLERANCE = 0.25  # relative


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="array rows = cols (default 64)")
    parser.add_argument("--seed", type=int, default=7, help="chip and weight seed")
    parser.add_argument("--batch", type=int, default=100, help="input vectors per direction")
    parser.add_argument("--acceptance", type=float, default=0.002, help="write-verify band (0.002 = 0.2 %%)")
    parser.add_argument("--g-lo", type=float, default=10e-6, help="conductance of weight -1 (S, default 10 uS)")
    parser.add_argument("--g-hi", type=float, default=80e-6, help="conductance of weight +1 (S, default 80 uS)")
    parser.add_argument("--state", type=Path, default=None, help="chip state file (default: a temp file)")
    parser.add_argument("--uart", action="store_true",
                        help="model the board's 921600-baud link on the virtual clock (the 64x64 write-verify "
                             "then lasts ~80 s and its first cells are older than the reference's)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        state = args.state or Path(tmp) / "chip.npz"
        out = Path(tmp) / "aimc.h5"
        result = {"size": args.size, "seed": args.seed, "batch": args.batch, "acceptance": args.acceptance,
                  "g_lo": args.g_lo, "g_hi": args.g_hi, "wall_s": {}, "runs": {}}
        total = time.perf_counter()
        with Station.open(f"sim:{args.size}x{args.size}", sim_state=state, seed=args.seed) as station:
            if not args.uart:
                station.lab.board.link_baud = None  # the reference reads an array programmed at once
            start = time.perf_counter()
            forming = run_protocol(station, "forming", {"v_start": 2.9}, out=out)
            result["wall_s"]["forming"] = round(time.perf_counter() - start, 1)
            result["forming_yield"] = forming.summary.get("yield")
            for t_after, label in ((1.0, "1s"), (TEN_YEARS, "10y")):
                start = time.perf_counter()
                run = run_protocol(station, "mvm", {"seed": args.seed, "t_after": t_after, "batch": args.batch,
                                                    "acceptance": args.acceptance, "periphery": "both",
                                                    "g_lo": args.g_lo, "g_hi": args.g_hi}, out=out)
                result["wall_s"][f"mvm_{label}"] = round(time.perf_counter() - start, 1)
                s = run.summary
                reference = REFERENCE[t_after]
                rmse = s.get("rmse_forward")
                result["runs"][label] = {
                    "status": run.status, "error": run.error, "t_after": t_after,
                    **{k: s.get(k) for k in ("rmse_forward", "rmse_backward", "rmse_forward_board",
                                             "rmse_backward_board", "rel_error_forward", "rel_error_backward",
                                             "weight_rmse_programmed", "weight_rmse_at_t", "success_rate",
                                             "pulses_mean", "pulses_max")},
                    "reference_rmse": reference,
                    "band": [reference * (1 - TOLERANCE), reference * (1 + TOLERANCE)],
                    "forward_in_band": rmse is not None and abs(rmse - reference) <= TOLERANCE * reference,
                }
        result["wall_s"]["total"] = round(time.perf_counter() - total, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
