"""The stochastic bit trains of parallel updates, compiled (numba; imported on the first train):
bit t of entry e's train is set when uniform (e, t) < p_e, the uniforms the 32-bit halves of
SplitMix64 outputs (G. Steele, D. Lea, C. Flood, OOPSLA 2014) of one 64-bit key per call, which
the caller's numpy Generator draws. numpy's own path (a float32 uniform per slot from the
Generator, a comparison, packbits) spent 73 us on a digits batch of 16 x 64 trains, ~1.7 ns a
uniform in per-value calls; here all of a train's uniforms are ~16 mixes in one loop (17 us)."""
import numpy as np
from numba import njit

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment and output mix
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31, _S32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)
_TWO32 = 4294967296.0


@njit(cache=True, error_model="numpy", boundscheck=False)
def bernoulli_trains(key, probability, length, out):
    """out[e] (uint64) = the train of `length` slots (1..64) of probability[e] (float64): bit t
    set when uniform t of the train is below it. Train e takes outputs e ceil(length / 2) + 1, ...
    of the stream of `key`, high half first; uniform u < floor(p 2^32) holds with probability
    floor(p 2^32) / 2^32, within 2^-32 of p (p >= 1: always, p <= 0 or NaN: never)."""
    words = (length + 1) // 2
    one = np.uint64(1)
    mask = (one << np.uint64(length)) - one if length < 64 else ~np.uint64(0)
    for e in range(probability.size):
        p = probability[e]
        threshold = np.uint64(0)
        if p >= 1.0:
            threshold = np.uint64(_TWO32)
        elif p > 0.0:
            threshold = np.uint64(p * _TWO32)
        bits = np.uint64(0)
        base = key + np.uint64(e * words) * _GAMMA
        for k in range(words):
            z = base + np.uint64(k + 1) * _GAMMA
            z = (z ^ (z >> _S30)) * _MIX1
            z = (z ^ (z >> _S27)) * _MIX2
            z = z ^ (z >> _S31)
            bits |= np.uint64((z >> _S32) < threshold) << np.uint64(2 * k)
            bits |= np.uint64((z & _LOW32) < threshold) << np.uint64(2 * k + 1)
        out[e] = bits & mask
