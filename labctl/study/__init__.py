"""Device studies: a grid of simulated chips and protocol sequences, run on Dask (docs/studies/README.md).

- `spec`: the study file (TOML): base station, steps, axes; checked before anything runs (`load_study`).
- `point`: one point as a worker runs it (`run_point`): its own station from the device file with the
  point's values, the steps in order, the summaries.
- `runner`: `run_study` / `resume_study`, the function `labctl study run` / `resume` call: every
  point a task on dask.distributed (a LocalCluster, or an existing cluster's scheduler), progress.
- `results`: the results file (HDF5, appended per point) and its readers: `study_status`,
  `study_frame` (pandas), `study_dataset` (xarray, axes as coordinates).
- `plots`: the standard figures (`plot_study`).
"""
from .point import PointTask, run_point
from .results import read_points, study_dataset, study_frame, study_status
from .runner import StudyProgress, StudyResult, resume_study, run_study
from .spec import Study, StudyError, load_study, parse_study

__all__ = ["PointTask", "Study", "StudyError", "StudyProgress", "StudyResult", "load_study", "parse_study",
           "read_points", "resume_study", "run_point", "run_study", "study_dataset", "study_frame",
           "study_status"]
