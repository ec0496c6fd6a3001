"""Compiled kernels of the simulated chip (numba): the parallel update's coincidence counts and
closed-form soft-bounds steps (one call per update request, fire_segments; one pass over the
cells per segment and side), the Box-Muller normal draws of the update and of the MVM read
noise, and the read state's refresh by index (float64, with its own vectorizable ln, _log64).

Why compiled: numpy evaluates a per-cell law one operation at a time, each a pass over the
array; pulse_counts' law took ~50 such passes (~6 ms at 512 x 512). Here each cell's law runs
in SIMD lanes, through work arrays that stay in L1: ~1.2 ms at 512 x 512 (~4.5 ns a cell: ~3/4
arithmetic, ~1/4 the ~83 bytes of float64 state each cell reads and writes).

How LLVM is made to vectorize it (numba compiles through LLVM, whose loop vectorizer decides):
- numba's math.log, exp, sin, cos are scalar library calls, so the kernels take their own
  float32 forms: ln and sin/cos are the Cephes single-precision polynomials (S. L. Moshier:
  the reductions and coefficients of logf, sinf, cosf), expm1 a degree-8 Taylor polynomial after
  the exp reduction, 1/sqrt three Newton steps from a bit-level first guess (multiplies only:
  the divider, 6-12 cycles a vector, was the bottleneck at six divides and roots a cell); all
  within 3 float32 ulp (tests/test_physics_fast.py), the precision of numpy's own float32
  functions, which the numpy form of this law used;
- a loop runs at the width of its widest type, so the law is split into loops of one precision
  each (float64 state in and out, float32 arithmetic, 64-bit generator words), and the 32-bit
  integer work (exponent fields, angles) is done by small intrinsics: numba widens integer
  arithmetic to 64 bits;
- work arrays on the stack (_stack): LLVM knows they alias no argument, so loops that store there
  need no run-time overlap checks, and the one that gathers from the drive table vectorizes at
  all; the state arrays are indexed by unsigned integers (a signed index gets numba's
  negative-index wraparound, which LLVM cannot vectorize; slicing the arrays per block did it at
  twice the cost);
- the float constants come in as an argument (CONSTANTS, _Constants): a compile-time constant
  costs a 64-bit address load at every use (the JIT's code model), ~15 % of a polynomial;
- 512-bit vectors where the CPU has them (_wide_vectors), which LLVM does not use by default.
fastmath is limited to "contract" (fused multiply-adds, one rounding instead of two): no
reassociation, approximate reciprocals or no-NaN assumptions, so the polynomials are evaluated as
written.

Random numbers: a counter-based generator in the kernel, keyed by one 64-bit output of the chip's
numpy Generator per call. Drawing what the kernel needs with the Generator (one 64-bit output per
cell, bit_generator.random_raw) costs ~5 ns an output, ~1.3 ms at 512 x 512 on its own. The
generator is SplitMix64 (G. Steele, D. Lea, C. Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014: java.util.SplittableRandom, and the seeding generator of xoshiro):
output k of the stream of `key` is mix(key + (k + 1) 0x9E3779B97F4A7C15), so the cell of flat
index k takes output k whatever else is drawn, in whatever order or blocks: the result does not
depend on the kernels' chunking or vectorization, or on which cells step. Streams of different
calls are segments at random offsets of one 2^64 cycle: N calls of L cells overlap anywhere with
probability ~N^2 L / 2^64 (1e-4 for 1e5 updates of 512 x 512). The chip's Generator state, saved
in state files, fixes every key: a chip resumed from its state continues identically.

Normal draws: Box-Muller pairs, one 64-bit output each: the high 32 bits give the radius
sqrt(-2 ln u), u = (k + 1/2) / 2^32 (tails to 6.8 sigma, beyond which a normal has 1.4e-11 of its
mass), the low 32 bits the angle, reduced exactly in integers to [-pi/4, pi/4) and a quadrant.

Compilation: cache=True, once per machine and source version (numba keeps the machine code in
__pycache__ next to this file); importing this module compiles (~10 s on a fresh checkout) or loads
(~0.5 s with numba's own import) every kernel for the types the simulator passes
(_warm_up), so that no update pays it. sim_backend.physics imports it on first need.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# cache=True: compiled once per machine and source version (numba's cache in __pycache__); fastmath
# only "contract" (fused multiply-adds); numpy's error model (no division-by-zero checks in loops)
_kernel = njit(cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)
# the read state's kernels: no contraction either, each operation rounded as numpy rounds it
_exact = njit(cache=True, error_model="numpy", boundscheck=False)
_inline = njit(inline="always", cache=True, fastmath={"contract"}, error_model="numpy", boundscheck=False)
F32 = np.float32
_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64: the golden-ratio increment and the mix
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)


class _Constants(NamedTuple):
    """The float32 constants of the kernels' arithmetic. They reach a kernel as an argument (an
    array, CONSTANTS, turned into this tuple at its entry): run-time values, which LLVM keeps in
    registers or reads off the stack, where a compile-time constant is loaded through its
    64-bit address every time it is used (numba's JIT code model), two instructions for one,
    ~15 % of a polynomial's."""

    one: Any
    half: Any
    zero: Any
    three_halves: Any
    minus_two: Any
    sqrt_half: Any
    ln2_hi: Any  # ln 2 in two parts (Cody-Waite)
    ln2_lo: Any
    log2e: Any
    exp_floor: Any  # e^x - 1 = -1 in float32 below; 2^k stays a normal float32
    near_0: Any  # expm1 of x >= this (below ln 2 / 2) is its polynomial alone
    small_x: Any  # log1p(x) as its series below: x^7 / 7 < 3e-14 x
    turn: Any  # radians per unit of a 32-bit angle
    two_m32: Any
    log_p: Any  # Cephes logf
    expm1_p: Any  # 1/8! .. 1/2!
    sin_p: Any  # Cephes sinf, cosf on [-pi/4, pi/4]
    cos_p: Any
    log1p_p: Any  # -1/2, 1/3, -1/4, 1/5, -1/6


_VALUES = _Constants(
    1.0, 0.5, 0.0, 1.5, -2.0, 0.707106781186547524, 0.693359375, -2.12194440e-4, 1.44269504088896341, -87.0, -0.34,
    2.0**-6, 2.0 * np.pi / 2.0**32, 2.0**-32,
    (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
     2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1),
    tuple(1.0 / f for f in (40320.0, 5040.0, 720.0, 120.0, 24.0, 6.0, 2.0)),
    (-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1),
    (2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2),
    (-0.5, 1.0 / 3.0, -0.25, 0.2, -1.0 / 6.0))
CONSTANTS = np.array([v for field in _VALUES for v in (field if isinstance(field, tuple) else (field,))], np.float32)


@_inline
def _constants(a):
    """The _Constants of the flat array CONSTANTS (its order)."""
    return _Constants(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13],
                      (a[14], a[15], a[16], a[17], a[18], a[19], a[20], a[21], a[22]),
                      (a[23], a[24], a[25], a[26], a[27], a[28], a[29]), (a[30], a[31], a[32]), (a[33], a[34], a[35]),
                      (a[36], a[37], a[38], a[39], a[40]))


def _frexp_for(name: str, number, width: int, fraction_bits: int):
    """An intrinsic (m, e) with x = m 2^e, m in [1/2, 1), for a positive normal float x of this
    numba type, both in it: the exponent field taken out and replaced, in integer lanes of the
    float's width (numba's own integer arithmetic widens to 64 bits, which halves the SIMD width
    of float32)."""
    lanes, floats = ir.IntType(width), (ir.FloatType() if width == 32 else ir.DoubleType())
    field = (1 << (width - 1 - fraction_bits)) - 1  # the exponent's bits
    half = (field >> 1) - 1  # the biased exponent of 1/2

    def typer(typingctx, x):
        if x != number:
            return None

        def codegen(context, builder, signature, args):
            bits = builder.bitcast(args[0], lanes)
            exponent = builder.sub(builder.and_(builder.lshr(bits, ir.Constant(lanes, fraction_bits)),
                                                ir.Constant(lanes, field)), ir.Constant(lanes, half))
            mantissa = builder.or_(builder.and_(bits, ir.Constant(lanes, (1 << fraction_bits) - 1)),
                                   ir.Constant(lanes, half << fraction_bits))
            return context.make_tuple(builder, signature.return_type,
                                      (builder.bitcast(mantissa, floats), builder.sitofp(exponent, floats)))
        return types.UniTuple(number, 2)(number), codegen
    typer.__name__ = typer.__qualname__ = name  # (numba's cache names an intrinsic by it)
    return intrinsic(typer)


_frexp = _frexp_for("_frexp", types.float32, 32, 23)
_frexp64 = _frexp_for("_frexp64", types.float64, 64, 52)
_I32, _F32T = ir.IntType(32), ir.FloatType()


@intrinsic
def _pow2(typingctx, k):
    """2^k (float32) for an integral float32 k in -126..127."""
    if k != types.float32:
        return None

    def codegen(context, builder, signature, args):
        exponent = builder.add(builder.fptosi(args[0], _I32), ir.Constant(_I32, 127))
        return builder.bitcast(builder.shl(exponent, ir.Constant(_I32, 23)), _F32T)
    return types.float32(types.float32), codegen


@intrinsic
def _unsigned_f32(typingctx, x):
    """A uint32 as a float32 (rounded to 24 bits), without numba's widening to 64 bits."""
    if x != types.uint32:
        return None

    def codegen(context, builder, signature, args):
        return builder.uitofp(args[0], _F32T)
    return types.float32(types.uint32), codegen


@intrinsic
def _angle_parts(typingctx, turn):
    """A 32-bit angle (2^32 = a full turn) reduced for sincos, in 32-bit lanes: (the angle
    minus the nearest multiple of a quarter turn, a signed integer in [-2^29, 2^29), and that
    multiple 0..3), both as float32."""
    if turn != types.uint32:
        return None

    def codegen(context, builder, signature, args):
        ahead = builder.add(args[0], ir.Constant(_I32, 1 << 29))
        quadrant = builder.lshr(ahead, ir.Constant(_I32, 30))
        reduced = builder.sub(builder.and_(ahead, ir.Constant(_I32, 0x3FFFFFFF)), ir.Constant(_I32, 1 << 29))
        return context.make_tuple(builder, signature.return_type,
                                  (builder.sitofp(reduced, _F32T), builder.sitofp(quadrant, _F32T)))
    return types.UniTuple(types.float32, 2)(types.uint32), codegen


@intrinsic
def _pair(typingctx, pair):
    """The two float32 halves (low, high) of a uint64 (a complex64 table entry: value, rise)."""
    if pair != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        low = builder.bitcast(builder.trunc(args[0], _I32), _F32T)
        high = builder.bitcast(builder.trunc(builder.lshr(args[0], ir.Constant(ir.IntType(64), 32)), _I32), _F32T)
        return context.make_tuple(builder, signature.return_type, (low, high))
    return types.UniTuple(types.float32, 2)(types.uint64), codegen


@intrinsic
def _popcount(typingctx, x):
    """Set bits of an unsigned integer (LLVM's ctpop: one instruction, vectorized where the CPU
    has one)."""
    if not isinstance(x, types.Integer) or x.signed:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])
    return x(x), codegen


@intrinsic
def _stack(typingctx, size, dtype):
    """A pointer to `size` (a literal) elements of `dtype` on the stack, allocated once at the
    function's entry. The vectorizer knows that stack memory aliases no argument array, so a loop
    that stores only there needs no run-time overlap checks (and one that gathers from an
    argument, the drive table, vectorizes at all)."""
    if not isinstance(size, types.IntegerLiteral) or not isinstance(dtype, types.NumberClass):
        return None
    element = dtype.dtype

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_data_type(element), size=size.literal_value)
    return types.CPointer(element)(size, dtype), codegen


@intrinsic
def _wide_vectors(typingctx):
    """Let LLVM vectorize the calling kernel at the CPU's widest vectors (512 bits with
    AVX-512): its default for such CPUs is 256, for the clock drop some of them take on 512-bit
    code, a drop that this arithmetic-bound code outruns (at 512 x 512 the update kernel takes
    ~25 % less time). A string attribute of the function, which llvmlite's attribute set does
    not list: added as a set element; if a later llvmlite refuses it, the kernels only run
    narrower."""
    def codegen(context, builder, signature, args):
        try:
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        except Exception:  # noqa: BLE001 - a performance hint only
            pass
        return context.get_dummy_value()
    return types.none(), codegen


@intrinsic
def _rsqrt_seed(typingctx, x):
    """A first guess of 1 / sqrt(x) (float32, x >= 0) from the bits of x, within 3.5 % of
    itself (C. Lomont's constant): the start of _rsqrt's Newton steps."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        bits = builder.lshr(builder.bitcast(args[0], _I32), ir.Constant(_I32, 1))
        return builder.bitcast(builder.sub(ir.Constant(_I32, 0x5F375A86), bits), _F32T)
    return types.float32(types.float32), codegen


@_inline
def _rsqrt(x, c):
    """1 / sqrt(x) of a positive normal float32 by three Newton steps from _rsqrt_seed
    (relative error 3.5e-2 -> 1.8e-3 -> 4.6e-6 -> 3e-11 before rounding): multiplies and adds
    only. A sqrt or a divide takes the one divider unit of a core for 6-12 cycles per vector
    (the update kernel's bottleneck when it took six of them per cell)."""
    y = _rsqrt_seed(x)
    h = c.half * x
    y = y * (c.three_halves - h * y * y)
    y = y * (c.three_halves - h * y * y)
    return y * (c.three_halves - h * y * y)


@_inline
def _sqrt(x, c):
    """sqrt(x) of a float32 x >= 0 as x / sqrt(x) (_rsqrt; 0 gives 0: its seed is finite), for
    loops with too little other work to hide the divider's 12 cycles per vector."""
    return x * _rsqrt(x, c)


@_inline
def _log(x, c):
    """ln x of a positive normal float32 (Cephes logf: x = m 2^e, m in [sqrt(1/2), sqrt(2)))."""
    m, e = _frexp(x)
    low = m < c.sqrt_half
    e = e - c.one if low else e
    m = (m + m if low else m) - c.one
    z = m * m
    p = c.log_p
    y = ((((((((p[0] * m + p[1]) * m + p[2]) * m + p[3]) * m + p[4]) * m + p[5]) * m + p[6]) * m + p[7]) * m
         + p[8])
    y = y * m * z + e * c.ln2_lo - c.half * z
    return m + y + e * c.ln2_hi


# fdlibm's e_log.c (Sun Microsystems, 1993): ln(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)), s = f / (2 + f)
_LG = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01, 2.222219843214978396e-01,
       1.818357216161805012e-01, 1.531383769920937332e-01, 1.479819860511658591e-01)
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # ln 2 in two parts
_SQRT_HALF, _INV_LN10 = 0.70710678118654752440, 0.43429448190325182765


@njit(inline="always", cache=True, error_model="numpy", boundscheck=False)
def _log64(x):
    """ln x of a positive normal float64, within 1 ulp (fdlibm's log; tests/test_physics_fast.py
    checks it against numpy's over 1e-304..1e304 and around 1), in a form LLVM vectorizes (no
    libm call: numba's math.log is one, scalar, without SVML). No contraction: its error
    analysis assumes none."""
    m, e = _frexp64(x)
    low = m < _SQRT_HALF
    e = e - 1.0 if low else e
    f = (m + m if low else m) - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = z * (_LG[0] + w * (_LG[2] + w * (_LG[4] + w * _LG[6]))) + w * (_LG[1] + w * (_LG[3] + w * _LG[5]))
    half_f2 = 0.5 * f * f
    return e * _LN2_HI - ((half_f2 - (s * (half_f2 + r) + e * _LN2_LO)) - f)


@_inline
def _expm1_near_0(r, c):
    """e^r - 1 of a float32 |r| <= ln 2 / 2: its Taylor polynomial to degree 8 (r^9 / 9! < 2e-9 r)."""
    p = c.expm1_p
    return r + r * r * ((((((p[0] * r + p[1]) * r + p[2]) * r + p[3]) * r + p[4]) * r + p[5]) * r + p[6])


@_inline
def _expm1(x, c):
    """e^x - 1 of a float32 x <= 0, to float32 precision also near 0: x = k ln 2 + r,
    |r| <= ln 2 / 2, e^x - 1 = 2^k expm1(r) + (2^k - 1) (k = 0 for x >= c.near_0: the same
    result as _expm1_near_0(x), bit for bit)."""
    x = max(x, c.exp_floor)
    k = np.floor(x * c.log2e + c.half)
    r = (x - k * c.ln2_hi) - k * c.ln2_lo
    q = _expm1_near_0(r, c)
    scale = _pow2(k)
    return scale * q + (scale - c.one)


@_inline
def _radius(high, c):
    """Box-Muller's radius sqrt(-2 ln u), u = (high + 1/2) / 2^32, of a word's high half."""
    u = (_unsigned_f32(high) + c.half) * c.two_m32  # high rounds to 24 bits as a float32
    return np.sqrt(c.minus_two * _log(u, c))  # (the divider, idle in this loop, beats _rsqrt here)


@_inline
def _rotation(low, c):
    """Box-Muller's (cos t, sin t) of the angle t = 2 pi low / 2^32 of a word's low half."""
    reduced, quadrant = _angle_parts(low)
    a = reduced * c.turn  # the angle minus quadrant x pi/2, in [-pi/4, pi/4)
    a2 = a * a
    sp, cp = c.sin_p, c.cos_p
    s = a + a * a2 * ((sp[0] * a2 + sp[1]) * a2 + sp[2])
    co = c.one - c.half * a2 + a2 * a2 * ((cp[0] * a2 + cp[1]) * a2 + cp[2])
    # (cos, sin) of a + q pi/2: (co, s) (-s, co) (-co, -s) (s, -co); quadrant 0..3 as a float32
    # (bitwise, not `or`: a short-circuit branch keeps the loop from being vectorized)
    odd = (quadrant == c.one) | (quadrant == c.three_halves + c.three_halves)
    cos_t = s if odd else co
    sin_t = co if odd else s
    cos_t = -cos_t if (quadrant == c.one) | (quadrant == c.one + c.one) else cos_t
    sin_t = -sin_t if quadrant >= c.one + c.one else sin_t
    return cos_t, sin_t


@_inline
def _mix(z):
    """SplitMix64's output function of the state z: output k of the stream started at `key`
    is _mix(key + (k + 1) 0x9E3779B97F4A7C15)."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@_inline
def _words(key, start, high, low, m):
    """Outputs start..start + m - 1 of the stream of `key`, split into their high and low halves
    (a loop of its own: 64-bit lanes hold half as many values)."""
    z = key + np.uint64(start) * _GAMMA
    for k in range(m):  # the counter as a running sum: one 64-bit multiply fewer per word
        z += _GAMMA
        word = _mix(z)
        high[k], low[k] = np.uint32(word >> _S32), np.uint32(word & _LOW32)


@_inline
def _add_draws(mean, variance, out, element, draws, m):
    """out = mean + sqrt(max(variance, 0)) z for the m draws z, at out's elements from the one
    of flat (C order) index `element` on (row and column counted on: no division per element)."""
    width = out.shape[1]
    row, col = element // width, element % width
    done = 0
    while done < m:  # row by row: an inner loop without a carried index, which LLVM vectorizes
        n = min(width - col, m - done)
        for j in range(n):
            var = variance[row, col + j]
            var = var if var > 0 else var - var  # max(var, 0) in var's dtype, NaN kept
            out[row, col + j] = mean[row, col + j] + np.float64(np.sqrt(var)) * np.float64(draws[done + j])
        done += n
        row, col = row + 1, 0


@_kernel
def add_noise(key, mean, variance, out, constants):
    """out = mean + sqrt(max(variance, 0)) z elementwise over 2-D arrays of one shape (out
    float64 in C order; mean and variance float32 or float64, in any layout), z independent
    standard normals (float32, tails to 6.8 sigma): Box-Muller pairs, pair k from output k of
    the SplitMix64 stream of `key` (a uint64), its cosine draw for element k of out (C order),
    its sine draw for element half + k (half = ceil(size / 2)). `constants`: CONSTANTS."""
    _wide_vectors()
    if mean.shape != out.shape or variance.shape != out.shape or constants.size != CONSTANTS.size:
        raise ValueError("add_noise: mean, variance and out differ in shape, or constants is not CONSTANTS")
    c = _constants(constants)
    n = out.size
    half = (n + 1) // 2
    high, low = carray(_stack(_BLOCK, np.uint32), _BLOCK), carray(_stack(_BLOCK, np.uint32), _BLOCK)
    radius = carray(_stack(_BLOCK, np.float32), _BLOCK)
    first, second = carray(_stack(_BLOCK, np.float32), _BLOCK), carray(_stack(_BLOCK, np.float32), _BLOCK)
    for start in range(0, half, _BLOCK):
        m = min(_BLOCK, half - start)
        _words(key, start, high, low, m)
        for k in range(m):
            radius[k] = _radius(high[k], c)
        for k in range(m):
            cos_t, sin_t = _rotation(low[k], c)
            first[k], second[k] = radius[k] * cos_t, radius[k] * sin_t
        _add_draws(mean, variance, out, start, first, m)
        _add_draws(mean, variance, out, half + start, second, min(m, n - half - start))


BLOCK = _BLOCK = 128  # cells whose coincidences are checked before any is computed (sparse updates); work in L1


@_inline
def _log1p(x, c):
    """ln(1 + x) of a float32 x >= 0: ln v + (x - (v - 1)) with v = 1 + x rounded, the
    correction being the rounding of v (exact in float32), to ~1 ulp also for tiny x."""
    v = c.one + x
    return _log(v, c) + (x - (v - c.one))


@_inline
def _log1p_small(x, c):
    """ln(1 + x) of a float32 0 <= x <= c.small_x by its series (6 terms)."""
    p = c.log1p_p
    return x * (c.one + x * (p[0] + x * (p[1] + x * (p[2] + x * (p[3] + x * p[4])))))


@_inline
def _drift(noise, z, log_t, ramp, sigma_slope, sigma_0, drift_mean, ln_2tr, c):
    """conductance()'s relaxation drift (float32) of a cell of relaxation draw z and read-noise
    factor `noise` (read_noise log10(G / uS)) at ln max(age, 1 s) = log_t and min(age, 1 s) =
    ramp: the read noise at max(age, 1 s) taken with ln(t + t_read) = ln t (1e-6 relative)."""
    measured = sigma_slope * log_t + sigma_0
    spread = _sqrt(max(measured * measured - noise * noise * (log_t - ln_2tr), c.zero), c)
    return ramp * (spread * z - drift_mean * log_t)


@_kernel
def soft_bounds_steps(counts, formed, stuck, g, t_prog, z_relax, cycles, g_lo, g_hi, rate, per_step, cached,
                      use_cached, table, scale, setting, width_per_tau, now, at, key, law, touched, constants):
    """One parallel update's closed-form steps, in place, per cell of the flat state arrays:
    cells with counts > 0, formed and not stuck step. Returns how many did and how many blocks
    of _BLOCK cells they lie in, whose starts go to `touched` (stepped_cells lists the cells).

    `law` (float64): c2c_noise, endurance_n0, endurance_closing / ln 10, drift_mean,
    drift_sigma_slope, drift_sigma_0, read_noise, ln(2 t_read_noise), G_NOISE_REF. `rate` and `per_step` are
    the read state's float32 step rates and cycles per siemens of step (1 / (2 (g_hi - g_lo))),
    `table` its drive table (ReadState.drive_table: complex64 value + 1j rise) viewed as uint64,
    with `scale` nodes per siemens; `constants` is CONSTANTS. The start conductance is `cached` (the fresh read state) when
    use_cached, else the relaxation of the programmed value (ArrayPhysics.conductance's law).
    Normal draws: output k of the SplitMix64 stream of `key` for the cell of flat index k
    (independent of which cells step).

    Blocks of _BLOCK cells without a coincidence are skipped after a look at their counts. A
    block with one goes through the law in a few loops over its cells, each of one precision
    (float64 state in and out, float32 arithmetic, 64-bit generator words), through work arrays
    on the stack: LLVM vectorizes a loop at the width its widest type allows, and a loop that
    mixes them ran at half the float32 width or not at all. Every cell of such a block from its
    first to its last coincidence is computed; the state is written back as it was where a cell
    does not step. Two shortcuts, each exact to float32: cells of a block that share one
    programming time (a dense update's cells at the next update) take ln t and the ramp as
    numbers, and a block whose cells have cycled less than 2^-6 n0 takes the window closing's
    log1p as its series.
    """
    _wide_vectors()
    n_cells = counts.size  # (bounds are not checked in the loops: the arrays' sizes are, here)
    for array_size in (formed.size, stuck.size, g.size, t_prog.size, z_relax.size, cycles.size, g_lo.size, g_hi.size,
                       rate.size, per_step.size, cached.size):
        if array_size != n_cells:
            raise ValueError("soft_bounds_steps: the per-cell arrays differ in size")
    if (touched.size < (n_cells + _BLOCK - 1) // _BLOCK or law.size != 9 or table.size == 0
            or constants.size != CONSTANTS.size):
        raise ValueError("soft_bounds_steps: touched holds fewer entries than blocks, or law or table is wrong")
    c = _constants(constants)
    c2c, n0, closing_rate, drift_mean, sigma_slope, sigma_0, read_noise, ln_2tr, g_ref = law
    g_floor, per_g_floor = F32(g_ref), F32(1.0 / g_ref)
    c2c, drift_mean, sigma_slope, sigma_0 = F32(c2c), F32(drift_mean), F32(sigma_slope), F32(sigma_0)
    read_noise, ln_2tr, per_n0 = F32(read_noise / np.log(10.0)), F32(ln_2tr), F32(1.0 / n0)
    most_closing = F32(0.9 / closing_rate) if closing_rate > 0 else F32(0.0)
    closing_rate = F32(closing_rate)
    scale = F32(scale)
    top = F32(table.size - 1)
    last_node = np.uint32(table.size - 1)
    n_active = n_touched = 0
    f32, f64 = np.float32, np.float64
    x_s, win, a1 = carray(_stack(_BLOCK, f32), _BLOCK), carray(_stack(_BLOCK, f32), _BLOCK), carray(_stack(_BLOCK, f32), _BLOCK)
    ramp, noise, z_s = carray(_stack(_BLOCK, f32), _BLOCK), carray(_stack(_BLOCK, f32), _BLOCK), carray(_stack(_BLOCK, f32), _BLOCK)
    steps = carray(_stack(_BLOCK, np.bool_), _BLOCK)
    closing, drift, pos = carray(_stack(_BLOCK, f32), _BLOCK), carray(_stack(_BLOCK, f32), _BLOCK), carray(_stack(_BLOCK, f32), _BLOCK)
    exponent, gap, delta = carray(_stack(_BLOCK, f32), _BLOCK), carray(_stack(_BLOCK, f32), _BLOCK), carray(_stack(_BLOCK, f32), _BLOCK)
    redraw, d_cycles = carray(_stack(_BLOCK, f32), _BLOCK), carray(_stack(_BLOCK, f32), _BLOCK)
    g0_s = carray(_stack(_BLOCK, f64), _BLOCK)
    high, low = carray(_stack(_BLOCK, np.uint32), _BLOCK), carray(_stack(_BLOCK, np.uint32), _BLOCK)
    for start in range(0, counts.size, _BLOCK):
        # cell i = base + k of the block: an unsigned index (numba checks a signed one for
        # negative values, which keeps LLVM from vectorizing the loop; slices of the arrays per
        # block would do, at twice the cost)
        base = np.uint64(start)
        m = min(_BLOCK, counts.size - start)
        seen = 0
        for k in range(m):
            i = base + np.uint64(k)
            seen |= counts[i]
        if seen == 0:
            continue
        # the block's cells from its first to its last coincidence: a block that a narrow matrix
        # only partly covers (32 of a row's 128 cells) computes its own cells only
        first, last = 0, m - 1
        while counts[base + np.uint64(first)] == 0:
            first += 1
        while counts[base + np.uint64(last)] == 0:
            last -= 1
        base, m = base + np.uint64(first), last - first + 1
        large = False  # float64 state in (and which shortcuts hold), in one loop: the more
        n_steps = 0  # arrays one loop reads, the more of their cache misses overlap
        t_0 = t_prog[base]
        shared = True  # every cell that steps programmed at t_0 (the others' results are not kept)
        for k in range(m):
            i = base + np.uint64(k)
            steps[k] = (counts[i] != 0) & formed[i] & ~stuck[i]
            n_steps += 1 if steps[k] else 0
            # the window after cycling: min(0.9, k log10(1 + cycles / n0)) (g_hi - g_lo), log1p
            # by its series while the cells have cycled little (below, in full)
            x = F32(cycles[i]) * per_n0
            large |= x > c.small_x
            win[k] = F32(g_hi[i] - g_lo[i])
            closing[k] = _log1p_small(x, c) * closing_rate * win[k]
            if not use_cached:  # (float32 copies: a float64 load in a float32 loop halves its width)
                shared &= (t_prog[i] == t_0) | ~steps[k]
                noise[k], z_s[k] = F32(g[i]), F32(z_relax[i])
        if large:
            for k in range(m):
                i = base + np.uint64(k)
                x_s[k] = F32(cycles[i]) * per_n0
            for k in range(m):
                closing[k] = min(_log1p(x_s[k], c), most_closing) * closing_rate * win[k]
        if not use_cached:  # the relaxation drift since programming
            for k in range(m):  # read_noise / ln 10 x ln(G / uS)
                noise[k] = read_noise * _log(max(noise[k], g_floor) * per_g_floor, c)
            if shared:
                age = now - t_0
                log_t, ramp_0 = _log(F32(max(age, 1.0)), c), F32(min(age, 1.0))
                for k in range(m):
                    drift[k] = _drift(noise[k], z_s[k], log_t, ramp_0, sigma_slope, sigma_0, drift_mean, ln_2tr, c)
            else:
                for k in range(m):
                    i = base + np.uint64(k)
                    age = now - t_prog[i]
                    a1[k], ramp[k] = F32(max(age, 1.0)), F32(min(age, 1.0))
                for k in range(m):
                    a1[k] = _log(a1[k], c)
                for k in range(m):
                    drift[k] = _drift(noise[k], z_s[k], a1[k], ramp[k], sigma_slope, sigma_0, drift_mean, ln_2tr, c)
        # float64: the window after cycling, the conductance at the start, its distance to the
        # bound stepped to and its position on the drive table's grid (the window is recomputed
        # where it is needed again: cheaper than a float64 work array, whose stores could stall
        # the loads of the state beside them)
        for k in range(m):
            i = base + np.uint64(k)
            lo = g_lo[i] + 0.25 * closing[k]
            hi = g_hi[i] - 0.75 * closing[k]
            g0 = cached[i] if use_cached else min(max(g[i] + drift[k], lo), hi)
            g0_s[k] = g0
            gap[k] = F32(g0 - (hi if setting else lo))
            pos[k] = min(max(F32(g0) * scale, c.zero), top)  # g0 < g_top: a no-op (a NaN stays: its node is clipped)
        for k in range(m):  # the switching drive at the start, interpolated in G (one 64-bit gather
            i = base + np.uint64(k)  # of (value, rise) per cell, by an unsigned index: no negative-
            u = pos[k]  # index wraparound), and the exponent of (1 - f)^n = exp(-n rate drive w / tau),
            node = min(np.uint32(u), last_node)  # in float64 (float32 products would round it by up to 2 ulp)
            value, rise = _pair(table[node])
            drive = np.float64(value) + np.float64(u - F32(node)) * np.float64(rise)
            exponent[k] = F32(-(np.float64(counts[i]) * np.float64(rate[i]) * drive * width_per_tau))
        _words(key, start + first, high, low, m)
        # float32: soft bounds, step = (bound - g0) (1 - (1 - f)^n), (1 - f)^n = exp(-n rate drive w / tau),
        # with cycle-to-cycle noise c2c |step| (1 - f)^n / sqrt(n); one function per loop: a loop
        # of several is one long chain of dependent operations per vector, which the core can
        # overlap across only a few iterations
        steep = False  # (1 - f)^n - 1: most updates step each cell by a few % of its window at most
        for k in range(m):
            steep |= exponent[k] < c.near_0
        if steep:
            for k in range(m):
                exponent[k] = _expm1(exponent[k], c)
        else:
            for k in range(m):
                exponent[k] = _expm1_near_0(exponent[k], c)
        for k in range(m):
            i = base + np.uint64(k)
            pos[k] = _rsqrt(max(F32(counts[i]), c.one), c)
        for k in range(m):
            delta[k] = _radius(high[k], c)
        for k in range(m):
            i = base + np.uint64(k)
            cos_t, sin_t = _rotation(low[k], c)
            kept, radius = exponent[k], delta[k]
            step = gap[k] * kept
            size = abs(step)
            delta[k] = step + c2c * size * (kept + c.one) * pos[k] * (radius * cos_t)
            redraw[k] = radius * sin_t
            d_cycles[k] = size * per_step[i]
        if n_steps == m:  # float64 state out: every cell steps (plain stores) ...
            for k in range(m):
                i = base + np.uint64(k)
                lo = g_lo[i] + 0.25 * closing[k]
                hi = g_hi[i] - 0.75 * closing[k]
                g[i] = min(max(g0_s[k] + delta[k], lo), hi)
                t_prog[i] = at
                z_relax[i] = redraw[k]
                cycles[i] += d_cycles[k]
        elif n_steps:  # ... or those that do
            for k in range(m):
                i = base + np.uint64(k)
                lo = g_lo[i] + 0.25 * closing[k]
                hi = g_hi[i] - 0.75 * closing[k]
                g_new = min(max(g0_s[k] + delta[k], lo), hi)
                g[i] = g_new if steps[k] else g[i]
                t_prog[i] = at if steps[k] else t_prog[i]
                z_relax[i] = redraw[k] if steps[k] else z_relax[i]
                cycles[i] += d_cycles[k] if steps[k] else c.zero
        if n_steps:
            n_active += n_steps
            touched[n_touched] = start
            n_touched += 1
    return n_active, n_touched


@_kernel
def stepped_cells(counts, formed, stuck, touched, out):
    """The flat indices of the cells that soft_bounds_steps stepped (counts > 0, formed, not
    stuck), found in the blocks it touched, into `out`; returns how many."""
    n = 0
    for start in touched:
        for i in range(start, min(start + _BLOCK, counts.size)):
            if counts[i] != 0 and formed[i] and not stuck[i] and n < out.size:
                out[n] = i
                n += 1
    return n


@_inline
def _add_train(gates, pulses, pulsed, k, counts, reached, peaks, take_back):
    """Add train k's coincidences popcount(gate & pulse) to counts (both sides; a row no train of
    the segment reached yet is written), or take them back; returns the train's total and puts
    in peaks[side] the most of the cells it reached (counts only grow within a segment)."""
    total = np.int64(0)
    for side in range(2):
        peak = np.uint8(0)
        if pulsed[side, k]:
            pulses_k = pulses[side, k]
            for i in range(gates.shape[1]):
                gate = gates[k, i]
                if gate == 0:
                    continue
                row = counts[side, i]
                row_total = np.uint32(0)
                if take_back:
                    for j in range(pulses_k.size):
                        row[j] -= np.uint8(_popcount(gate & pulses_k[j]))
                elif reached[side, i]:
                    for j in range(pulses_k.size):  # (uint8 sums: at most 2 x 32)
                        hits = _popcount(gate & pulses_k[j])
                        row_total += hits
                        value = row[j] + np.uint8(hits)
                        peak = max(peak, value)
                        row[j] = value
                else:
                    reached[side, i] = True
                    for j in range(pulses_k.size):
                        hits = _popcount(gate & pulses_k[j])
                        row_total += hits
                        peak = max(peak, np.uint8(hits))
                        row[j] = np.uint8(hits)
                total += row_total
        peaks[side] = peak
    return total


@_kernel
def segment_counts(gates, pulses, pulsed, runs, start, most_allowed, counts, most, totals):
    """The coincidences of the next segment of an update's trains, from train `start`: the
    longest run of trains start, start + 1, ... of one run (runs[k], the run of train k:
    consecutive trains of one polarity and amplitude) in which no cell collects more than
    most_allowed, at least one train. gates (trains, rows) are the row trains of the chip rows,
    pulses (2, trains, cols) the column trains reaching each side (BL, SL) of the chip columns,
    pulsed (2, trains) whether a train pulses that side at all. Fills counts (2, rows, cols,
    uint8) with each side's sum over the segment's trains of popcount(gate & pulse), most (2)
    with the most of any cell per side and totals[k] (int64) with train k's coincidences, for
    the segment's trains; returns the segment's end. A train that would take a cell past
    most_allowed is added and taken back, once per segment: one pass over the gated rows per
    train (the first that gates a row writes it), the others zeroed at the end; a side whose
    most is 0 is left as it was."""
    _wide_vectors()
    n_trains, n_rows = gates.shape
    n_cols = pulses.shape[2]
    if (pulses.shape[0] != 2 or pulses.shape[1] != n_trains or pulsed.shape[0] != 2 or pulsed.shape[1] != n_trains
            or runs.size != n_trains or counts.shape[0] != 2 or counts.shape[1] != n_rows or counts.shape[2] != n_cols
            or most.size != 2 or totals.size != n_trains or not 0 <= start < n_trains):
        raise ValueError("segment_counts: the arrays do not match")
    most[:] = 0
    reached = np.zeros((2, n_rows), np.bool_)  # rows a train of the segment gates: written, then added to
    peaks = np.zeros(2, np.uint32)
    end = start
    while end < n_trains and runs[end] == runs[start]:
        total = _add_train(gates, pulses, pulsed, end, counts, reached, peaks, False)
        if max(peaks[0], peaks[1]) > most_allowed and end > start:  # take the train back: it opens the next segment
            _add_train(gates, pulses, pulsed, end, counts, reached, peaks, True)
            break
        totals[end] = total
        for side in range(2):
            most[side] = max(most[side], peaks[side])
        end += 1
    for side in range(2):  # the rows no train of the segment gates (a side without pulses: all)
        if most[side]:
            for i in range(n_rows):
                if not reached[side, i]:
                    counts[side, i] = 0
    return end


@_exact
def fire_segments(gates, pulses, pulsed, runs, most_allowed, counts, totals, rows, cols, chip_cols, whole, chip_counts,
                  table_of, tables, scale, lengths, gate_open, width_per_tau, period, formed, stuck, g, t_prog,
                  z_relax, cycles, g_lo, g_hi, rate, per_step, cached, fresh, now, key, law, expiry, touched,
                  stepped, constants):
    """An update's trains on the chip's lines, segment after segment (segment_counts), each
    side of a segment that has coincidences in one soft_bounds_steps call: ArrayPhysics.
    pulse_trains' loop in one compiled call. gates, pulses, pulsed, runs, counts (2, len(rows),
    len(cols)) and totals as segment_counts; rows, cols (int64) the chip lines of the gates and
    the pulses on a chip of chip_cols columns, `whole` whether they are every line in order
    (counts[side] is then the chip's), else the counts go through chip_counts (flat uint8,
    zero, left zero). Side 0 takes v_cell = +amplitude, side 1 -amplitude: tables[table_of[runs[k],
    side]] is the drive table (uint64 view) of train k's v_cell, width_per_tau[side] the width
    over tau_set or tau_reset. lengths (int64) are the trains' slots, `period` the slot period;
    with gate_open False no cell steps (the pulses still take their time). The state arrays,
    rate, per_step, law and constants as soft_bounds_steps; `cached` is the read state's
    conductance, used while fresh[0] <= the clock <= fresh[1] and no cell has stepped. A
    stepped cell's expiry (the read state's, flat; size 0: none) goes to -inf, unless more
    than a quarter of the chip stepped in one call (reported: every cell is then stale).
    Side-call j takes the outputs from j x size on of the SplitMix64 stream of `key`. The clock
    runs from `now` as pulse_counts and the board's idle slots run it (a side its most
    coincidences x period, a segment all its slots), in float64 without contraction, as Python
    adds. Returns (the clock at the end, cells stepped, whether every cell is stale)."""
    size = g.size
    n_trains = gates.shape[0]
    most = np.zeros(2, np.uint32)
    n_stepped, all_stale, calls = 0, False, 0
    start = 0
    while start < n_trains:
        end = segment_counts(gates, pulses, pulsed, runs, start, most_allowed, counts, most, totals)
        busy = np.int64(0)
        for side in range(2):
            n_max = np.int64(most[side])
            if n_max == 0:
                continue
            at = now + n_max * period
            if gate_open:
                flat = counts[side].reshape(size) if whole else chip_counts
                if not whole:
                    _scatter_counts(counts[side], rows, cols, chip_cols, flat)
                use_cached = n_stepped == 0 and fresh[0] <= now <= fresh[1]
                side_key = key + np.uint64(calls) * np.uint64(size) * _GAMMA
                calls += 1
                n_active, n_touched = soft_bounds_steps(
                    flat, formed, stuck, g, t_prog, z_relax, cycles, g_lo, g_hi, rate, per_step, cached, use_cached,
                    tables[table_of[runs[start], side]], scale, side == 0, width_per_tau[side], now, at, side_key, law,
                    touched, constants)
                if n_active:
                    n_stepped += n_active
                    if 4 * n_active > size:
                        all_stale = True
                    elif expiry.size:
                        for k in range(stepped_cells(flat, formed, stuck, touched[:n_touched], stepped)):
                            expiry[stepped[k]] = -np.inf
                if not whole:
                    _scatter_counts(counts[side], rows, cols, chip_cols, flat, True)
            now += n_max * period
            busy += n_max
        slots = np.int64(0)
        for k in range(start, end):
            slots += lengths[k]
        if busy < slots:
            now += (slots - busy) * period
        start = end
    return now, n_stepped, all_stale


@_exact
def _scatter_counts(region, rows, cols, chip_cols, flat, clear=False):
    """The counts of the region rows x cols (line indices) into the chip's flat counts, or
    (clear) zeros where they went."""
    for r in range(rows.size):
        row_start = rows[r] * chip_cols
        for c in range(cols.size):
            flat[row_start + cols[c]] = 0 if clear else region[r, c]


@_exact
def relax_cells(cells, g, t_prog, z_relax, cycles, g_lo, g_hi, formed, law, now, fresh, out_g, out_rel2, out_expiry):
    """ArrayPhysics._relaxed for the flat cells `cells` (int64) of the state arrays (flat), written
    into the flat read-state arrays out_g, out_rel2, out_expiry at the same cells: the gather, the
    law and the scatter of a read's stale cells in one pass. A read's stale cells are few (a
    median of ~600 in a digits epoch), where numpy's ~40 passes over them cost more in calls than
    in arithmetic. Per block of _BLOCK cells: a gather into work arrays on the stack, the law in
    float64 in loops LLVM vectorizes (the logs by _log64 and its 1 / ln 10: within a few ulp
    of numpy's log10), the scatter; a block whose cells share one age (the cells an update
    stepped) takes the age's logs once. `law`: read_noise, t_read_noise, drift_sigma_slope,
    drift_sigma_0, drift_mean, endurance_n0, endurance_closing, G_NOISE_REF
    (ArrayPhysics._relax_law)."""
    _wide_vectors()
    read_noise, t_r, sigma_slope, sigma_0, drift_mean, n0, closing_rate, g_ref = (
        law[0], law[1], law[2], law[3], law[4], law[5], law[6], law[7])
    two_t_r, per_n0, per_g_ref = 2.0 * t_r, 1.0 / n0, 1.0 / g_ref
    f64 = np.float64
    g0, age, z = carray(_stack(_BLOCK, f64), _BLOCK), carray(_stack(_BLOCK, f64), _BLOCK), carray(_stack(_BLOCK, f64), _BLOCK)
    cyc, lo, hi = carray(_stack(_BLOCK, f64), _BLOCK), carray(_stack(_BLOCK, f64), _BLOCK), carray(_stack(_BLOCK, f64), _BLOCK)
    log_t, growth = carray(_stack(_BLOCK, f64), _BLOCK), carray(_stack(_BLOCK, f64), _BLOCK)
    growth_now, value, rel2 = (carray(_stack(_BLOCK, f64), _BLOCK), carray(_stack(_BLOCK, f64), _BLOCK),
                               carray(_stack(_BLOCK, f64), _BLOCK))
    pristine = carray(_stack(_BLOCK, np.bool_), _BLOCK)
    for start in range(0, len(cells), _BLOCK):
        m = min(_BLOCK, len(cells) - start)
        shared = True
        for k in range(m):
            i = cells[start + k]
            g0[k], age[k], z[k], cyc[k] = g[i], now - t_prog[i], z_relax[i], cycles[i]
            lo[k], hi[k], pristine[k] = g_lo[i], g_hi[i], not formed[i]
            shared &= age[k] == age[0]
        if shared:  # the read noise's growth at max(age, 1 s), and below 1 s at the age itself
            at_least_1 = max(age[0], 1.0)
            log_0 = _log64(at_least_1)
            growth_0 = max(_log64((at_least_1 + t_r) / two_t_r), 0.0)
            now_0 = growth_0 if age[0] >= 1.0 else max(_log64((max(age[0], 0.0) + t_r) / two_t_r), 0.0)
            for k in range(m):
                log_t[k], growth[k], growth_now[k] = log_0, growth_0, now_0
        else:
            for k in range(m):
                at_least_1 = max(age[k], 1.0)
                log_t[k] = _log64(at_least_1)
                growth[k] = max(_log64((at_least_1 + t_r) / two_t_r), 0.0)
            for k in range(m):
                young = max(_log64((max(age[k], 0.0) + t_r) / two_t_r), 0.0)
                growth_now[k] = growth[k] if age[k] >= 1.0 else young
        for k in range(m):
            noise = read_noise * _log64(max(g0[k], g_ref) * per_g_ref) * _INV_LN10
            measured = sigma_slope * log_t[k] + sigma_0
            spread = math.sqrt(max(measured * measured - noise * noise * growth[k], 0.0))
            drift = min(age[k], 1.0) * (-drift_mean * log_t[k] + spread * z[k])
            # the window after cycling (bounds()); never cycled: log 1 = 0, no closing
            span = (hi[k] - lo[k]) * min(0.9, closing_rate * _log64(1.0 + cyc[k] * per_n0) * _INV_LN10)
            g_now = min(max(g0[k] + drift, lo[k] + 0.25 * span), hi[k] - 0.75 * span)
            level = read_noise * _log64(max(g_now, g_ref) * per_g_ref) * _INV_LN10 / g_now
            value[k] = g0[k] if pristine[k] else g_now  # pristine: no relaxation, no read-noise law
            rel2[k] = 0.0 if pristine[k] else level * level * growth_now[k]
        for k in range(m):
            i = cells[start + k]
            out_g[i], out_rel2[i], out_expiry[i] = value[k], rel2[k], now + fresh * max(age[k], 1.0)


@_exact
def derive_cells(cells, g, rel2, formed, tables, rises, pristine, scale, values, noise):
    """ReadState._derive at the flat cells `cells` (int64): each cell's grid position u = g scale
    (float64, its node clipped to the last interval), and per table k of `tables` (terms, nodes)
    values[k, cell] = tables[k, node] + rises[k, node] f (f the fraction, in the tables' dtype),
    the pristine coefficient pristine[k] for a pristine cell; noise[cell] = values[0, cell]^2
    rel2[cell]. The same operations in the same order and dtype as the numpy form: equal to it."""
    last = tables.shape[1] - 2
    fraction = np.empty(1, tables.dtype)  # (a store rounds to the tables' dtype, as numpy's cast)
    for n in range(len(cells)):
        i = cells[n]
        u = g[i] * scale
        whole = min(math.floor(u), last)
        node = min(max(np.intp(whole), 0), last)  # (in range for any g, a NaN too: numpy's take clips)
        fraction[0] = u - whole
        for k in range(tables.shape[0]):
            if formed[i]:
                values[k, i] = rises[k, node] * fraction[0] + tables[k, node]
            else:
                values[k, i] = pristine[k]
        noise[i] = values[0, i] * values[0, i] * rel2[i]


@_exact
def cells_below(values, n_cols, rows, cols, bound, out):
    """The flat indices (row * n_cols + col, the block row by row) of the cells of the block
    rows x cols (line indices, int64) whose entry of the flat `values` is below `bound`, into
    `out`; returns how many. A read's scan for the stale cells of its block (np.nonzero of a
    block mask and the index arithmetic were ~20 us a read, more than the scan)."""
    n = 0
    for r in rows:
        for c in cols:
            i = r * n_cols + c
            if values[i] < bound:
                out[n] = i
                n += 1
    return n


@_exact
def take_marked(marks, n_cols, rows, cols, out):
    """cells_below for a flat boolean `marks`: the block's marked cells into `out`, their marks
    cleared; returns how many."""
    n = 0
    for r in rows:
        for c in cols:
            i = r * n_cols + c
            if marks[i]:
                marks[i] = False
                out[n] = i
                n += 1
    return n


def _warm_up() -> None:
    """Compile every kernel for the argument types the simulator passes (or load it from numba's
    cache: milliseconds), on tiny arrays: at import, so that the first update of a session (or of
    a timed test) does not pay the ~12 s that a first compilation takes on a fresh checkout.
    segment_counts is compiled inside fire_segments, its only caller."""
    n = 2 * BLOCK + 3
    f8, f4, u1, flag = np.zeros(n), np.zeros(n, np.float32), np.zeros(n, np.uint8), np.zeros(n, np.bool_)
    touched, law = np.zeros(n, np.int64), np.ones(9)
    soft_bounds_steps(u1, flag, flag, f8, f8.copy(), f8.copy(), f8.copy(), f8, f8, f4, f4, f8, False,
                      np.zeros(4, np.uint64), 1.0, True, 1.0, 0.0, 0.0, np.uint64(1), law, touched, CONSTANTS)
    stepped_cells(u1, flag, flag, touched[:0], touched)
    for dtype in (np.float64, np.float32):  # a float64 and a float32 read state's MVMs, row- and column-major
        sums = np.zeros((3, 2), dtype)
        for layout in (sums, sums.T.copy().T):
            add_noise(np.uint64(1), layout, layout, np.zeros((3, 2)), CONSTANTS)
    lines = np.arange(2, dtype=np.int64)
    cells_below(f8, 2, lines, lines, 1.0, touched)
    take_marked(flag, 2, lines, lines, touched)
    gates, pulses, counts = np.ones((1, 2), np.uint32), np.ones((2, 1, 2), np.uint32), np.zeros((2, 2, 2), np.uint8)
    cell = f8[:4]
    for whole in (True, False):
        fire_segments(gates, pulses, np.ones((2, 1), np.bool_), np.zeros(1, np.int64), 32, counts, np.zeros(1, np.int64),
                      lines, lines, 2, whole, np.zeros(4, np.uint8), np.zeros((1, 2), np.int64), np.zeros((1, 4), np.uint64),
                      1.0, np.ones(1, np.int64), False, np.ones(2), 1.0, flag[:4], flag[:4], cell, cell, cell, cell,
                      cell, cell, f4[:4], f4[:4], cell, np.array([1.0, 0.0]), 0.0, np.uint64(1), law, f8[:0], touched,
                      touched, CONSTANTS)
    for rel2 in (f8, f4):  # a float64 and a float32 read state
        relax_cells(touched[:1], f8, f8, f8, f8, f8, f8, flag, law, 0.0, 0.0, f8.copy(), rel2.copy(), f8.copy())
        tables = np.zeros((2, n), rel2.dtype)
        derive_cells(touched[:1], f8, rel2, flag, tables, tables[:, 1:].copy(), law[:2], 1.0, tables.copy(), rel2.copy())


_warm_up()
