"""The analog-AI building blocks of in-situ training, for protocols and scripts alike:

- data: the tasks (Iris, digits), their split and input scaling, default learning rates;
- floatnet: the floating-point baseline model (and the activations and loss it shares);
- layout: where each layer's differential weight matrix and bias pair sit on the array;
- pulses: stochastic bit trains and the queue that sends a step's updates, one request per matrix;
- tile: AnalogMatrix, a weight matrix on an array block (MVMs, updates, row reads/writes),
  and the symmetry-point programming and step calibration before training;
- network: AnalogNetwork, layers of analog matrices;
- optimizers: the training algorithms (sgd, ttv2, agad), one interface.

Everything here talks to the chip through a labctl.crossbar.Crossbar only."""
from .data import TASKS, Data, Task, prepare_data, scale_inputs
from .floatnet import FloatMLP, cross_entropy, output_error, run_fp_baseline, sigmoid, softmax
from .layout import MatrixCells, layout, used_mask
from .network import AnalogNetwork
from .optimizers import AGAD, ALGORITHMS, Algorithm, AnalogSGD, Settings, TikiTakaV2
from .pulses import PulseQueue, PulseSetup, bit_trains, bounding_block, pack_segments
from .tile import AnalogMatrix, calibrate_steps, program_symmetry_point, read_biases

__all__ = ["AGAD", "ALGORITHMS", "Algorithm", "AnalogMatrix", "AnalogNetwork", "AnalogSGD", "Data", "FloatMLP",
           "MatrixCells", "PulseQueue", "PulseSetup", "Settings", "TASKS", "Task", "TikiTakaV2", "bit_trains", "bounding_block",
           "calibrate_steps", "cross_entropy", "layout", "output_error", "pack_segments", "prepare_data",
           "program_symmetry_point", "read_biases", "run_fp_baseline", "scale_inputs", "sigmoid", "softmax", "used_mask"]
