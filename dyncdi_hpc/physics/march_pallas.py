"""The sheared march of sheared_march.py as fused Pallas kernels, with the same adjoint.

What. pallas_march(k, phase_step) is sheared_march(k, phase_step) (same contract, shapes and
dtypes, same discrete scheme) written as two pallas_calls: the forward march and the reverse
march of its custom VJP (sheared_march's _sheared_fwd / _sheared_back with block = 0: the
forward keeps each column's lost D0 value and the final state, the backward rebuilds every
column's input state from its output with K^-1 and accumulates the cotangents of K and of
the phase step). One program marches one tile of angles x batch slices through every column
(the march is independent across both), its state held in the kernel's loop carry.

Why. XLA's lax.scan of sheared_march writes the state (nrays, nangles, nbatch) of both fields
to device memory after every column and reads it back for the next; on a GPU the march is
then bound by that traffic, not by its few multiplies per point. The fused kernels keep the
state on chip for the whole column loop and stream K once per tile (K is shared by the
angles of a tile, so its traffic falls with the tile's angle count).

Layout and padding. Complex arrays cross the pallas_call boundary as real and imaginary
float arrays (the GPU/Triton backend has no complex dtype) and the kernels multiply by hand.
Triton loads and stores only power-of-two sizes, so rays, angles and batch slices are padded
to powers of two and whole tiles: extra rays below the last one (the march only shifts D0
down the rays, so they never reach the real rays), extra angles with unit phase steps, extra
slices with vacuum K (diag = 1, up = down = 0, which keeps the state (1, 0)); the results
are cropped. The shift of D0 by one ray has no register form in Triton: it goes through a
small per-program workspace (double-buffered by column parity, one barrier per column).

Memory. The programs of every angle tile add their share of K's cotangent into one K-sized
array (atomic adds on a GPU): a copy per angle tile would cost (nangles / TILE_ANGLES) times
K's memory, over 80 GB for the boxed 128^3 crystal at 128 angles.

Backend. JAX 0.11 deprecates Pallas's Triton backend (Mosaic GPU is its successor, with
tiles far wider than these); without it the package still imports, "auto" takes the XLA scan
and "pallas" is refused with the fix.

Speed. On CPU the kernels run in Pallas interpret mode, a correctness check that is much
slower than sheared_march. Their GPU speed against the XLA scan is measured by
benchmarks/dynamical.py (fused_march), only on a GPU machine; the tiles below are not tuned.
Without a GPU, tests/physics/test_march_pallas.py lowers both kernels for CUDA to Triton IR
(Pallas's own checks: power-of-two sizes, supported primitives), not to PTX.
"""

from __future__ import annotations

import functools
import logging
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl

try:
    from jax.experimental.pallas import triton as plgpu
except ImportError:  # deprecated in JAX 0.11; the package must import without it
    plgpu = None

from ..errors import ParameterError
from .sheared_march import ShearedCoefficients, sheared_march

# Angles and batch slices per program (powers of two). A program holds nrays_p x TILE_ANGLES
# x TILE_BATCH complex values per field in registers: small tiles keep long ray axes from
# spilling, and more angles per tile reuse each streamed K value more often.
TILE_ANGLES = 4
TILE_BATCH = 2
MARCH_KERNELS = ("auto", "xla", "pallas")
logger = logging.getLogger(__name__)
# the Triton lowering by name: a plain pallas_call on a GPU would take Mosaic GPU (JAX's
# default there), whose TMA copies need tiles far wider than these
# (TritonCompilerParams in older JAX; pyproject allows JAX >= 0.6)
_PARAMS = getattr(plgpu, "CompilerParams", None) or getattr(plgpu, "TritonCompilerParams", None)
TRITON = _PARAMS() if _PARAMS is not None else None

Pair = tuple[jax.Array, jax.Array]  # (real, imaginary) parts of one complex array


class _Layout(NamedTuple):
    """Static sizes of one fused march: real sizes, padded sizes and the tile grid."""

    nx: int
    nrays: int
    nangles: int
    nbatch: int
    rays: int  # nrays padded to a power of two
    ta: int
    tb: int
    na: int  # angle tiles
    nb: int  # batch tiles


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _layout(nx: int, nrays: int, nbatch: int, nangles: int) -> _Layout:
    ta = min(TILE_ANGLES, _pow2(nangles))
    tb = min(TILE_BATCH, _pow2(nbatch))
    na, nb = -(-nangles // ta), -(-nbatch // tb)
    return _Layout(nx, nrays, nangles, nbatch, _pow2(nrays), ta, tb, na, nb)


@functools.cache
def pallas_available() -> bool:
    """True on a GPU backend where a small fused march compiles and matches the XLA scan."""
    return TRITON is not None and jax.default_backend() == "gpu" and fused_march_works(False)


def fused_march_works(interpret: bool) -> bool:
    """Whether a small fused march (with its gradient) compiles, runs and matches the XLA scan.

    "auto" takes the fused march only after this check: a Triton or driver version that
    cannot compile it then costs a fallback to the XLA scan, not a failed reconstruction.
    """
    rng = np.random.default_rng(0)
    shape = (6, 5, 3)  # columns, rays, batch slices: none a whole tile

    def draw(scale: float) -> jax.Array:
        z = rng.normal(size=shape) + 1j * rng.normal(size=shape)
        return jnp.asarray(scale * z, jnp.complex64)

    k = ShearedCoefficients(1.0 + draw(0.05), draw(0.05), draw(0.05))
    phase = jnp.asarray(np.exp(-1j * np.linspace(0.1, 0.7, 5)), jnp.complex64)

    def loss(march_fn, k, phase):
        return jnp.sum(jnp.abs(march_fn(k, phase)) ** 2)

    fused = partial(pallas_march, interpret=interpret)
    try:
        got = jax.jit(jax.value_and_grad(partial(loss, fused), argnums=(0, 1)))(k, phase)
        got = jax.block_until_ready(got)
    except Exception as exc:  # any lowering or launch failure means "not on this machine"
        logger.warning("the fused Pallas march does not run here (%s); using the XLA scan", exc)
        return False
    want = jax.value_and_grad(partial(loss, sheared_march), argnums=(0, 1))(k, phase)
    same = all(
        bool(jnp.allclose(a, b, rtol=1e-4, atol=1e-5))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
    )
    if not same:
        logger.warning("the fused Pallas march disagrees with the XLA scan; using the XLA scan")
    return same


def resolve_march_kernel(name: str) -> str:
    """The march kernel a name selects: "auto" -> "pallas" where pallas_available(), else
    "xla"; others as is."""
    if name == "auto":
        return "pallas" if pallas_available() else "xla"
    return name


def march(k: ShearedCoefficients, phase_step: jax.Array, block: int, kernel: str) -> jax.Array:
    """sheared_march or pallas_march by kernel ("xla" / "pallas"): (nrays, nbatch, nangles)."""
    if kernel == "pallas":
        # block bounds the rounding of the state rebuilt on the way back over the stored
        # checkpoints; the fused march stores no history (its rebuilding is block = 0's)
        return pallas_march(k, phase_step)
    return sheared_march(k, phase_step, block)


def pallas_march(
    k: ShearedCoefficients, phase_step: jax.Array, interpret: bool | None = None
) -> jax.Array:
    """sheared_march(k, phase_step) by fused kernels: shape (nrays, nbatch, nangles), complex.

    k: ShearedCoefficients (nx, nrays, nbatch); phase_step (nangles,), complex64 or
    complex128. Reverse-mode differentiable in both. interpret: Pallas interpret mode (None:
    on the CPU backend only).
    """
    if TRITON is None:
        raise ParameterError(
            "dynamical.march_kernel",
            f"pallas, but JAX {jax.__version__} has no Pallas Triton backend",
            "use march_kernel auto or xla",
        )
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    return _fused(k, phase_step, bool(interpret))


def _mul(a: Pair, b: Pair) -> Pair:
    return a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]


def _add(a: Pair, b: Pair) -> Pair:
    return a[0] + b[0], a[1] + b[1]


def _inv(a: Pair) -> Pair:
    norm = a[0] * a[0] + a[1] * a[1]
    return a[0] / norm, -a[1] / norm


def _split_k(k: ShearedCoefficients, lay: _Layout) -> jax.Array:
    """K as one real array (nx, 6, rays, nb tb): re, im of diag, up, down; vacuum padding."""
    widths = ((0, 0), (0, lay.rays - lay.nrays), (0, lay.nb * lay.tb - lay.nbatch))
    parts = []
    for c, fill in ((k.diag, 1), (k.up, 0), (k.down, 0)):
        c = jnp.pad(c, widths, constant_values=fill)
        parts += [c.real, c.imag]
    return jnp.stack(parts, axis=1)


def _split_phase(phase_step: jax.Array, lay: _Layout) -> jax.Array:
    """The phase steps as (2, na ta): re, im, padded with unit steps."""
    ph = jnp.pad(phase_step, (0, lay.na * lay.ta - lay.nangles), constant_values=1)
    return jnp.stack([ph.real, ph.imag])


def _split_field(field: jax.Array, lay: _Layout) -> jax.Array:
    """An exit field (nrays, nbatch, nangles) as the kernels' (2, rays, na ta, nb tb), padded."""
    f = jnp.swapaxes(field, 1, 2)
    widths = (
        (0, lay.rays - lay.nrays),
        (0, lay.na * lay.ta - lay.nangles),
        (0, lay.nb * lay.tb - lay.nbatch),
    )
    f = jnp.pad(f, widths)
    return jnp.stack([f.real, f.imag])


def _column(k_ref, n) -> tuple[Pair, Pair, Pair]:
    """diag, up, down of column n, each (rays, 1, tb), broadcast over the tile's angles."""
    parts = [k_ref[n, j][:, None, :] for j in range(6)]
    return (parts[0], parts[1]), (parts[2], parts[3]), (parts[4], parts[5])


def _state_spec(lead: tuple[int, ...], lay: _Layout) -> pl.BlockSpec:
    """Blocks (*lead, ta, tb) of an array (*lead, na ta, nb tb): one tile per program."""
    zeros = (0,) * len(lead)
    return pl.BlockSpec((*lead, lay.ta, lay.tb), lambda a, b: (*zeros, a, b))


def _k_spec(lay: _Layout) -> pl.BlockSpec:
    return pl.BlockSpec((lay.nx, 6, lay.rays, lay.tb), lambda a, b: (0, 0, 0, b))


def _phase_spec(lay: _Layout) -> pl.BlockSpec:
    return pl.BlockSpec((2, lay.ta), lambda a, b: (0, a))


def _sync(interpret: bool) -> None:
    # the workspace is written and read by different threads of a program; interpret mode
    # runs sequentially and has no barrier primitive
    if not interpret:
        plgpu.debug_barrier()


def _fwd_kernel(k_ref, ph_ref, state_ref, lost_ref, ws_ref, *, lay: _Layout, interpret: bool):
    """March one tile through every column; ws (2 buffers, re/im, rays + 1, ta, tb)."""
    rays = lay.rays
    dtype = state_ref.dtype
    ph = (ph_ref[0][None, :, None], ph_ref[1][None, :, None])
    shape = (rays, lay.ta, lay.tb)
    for buf in range(2):  # row 0 of the shifted D0: the incident wave entering above ray 0
        ws_ref[buf, 0, 0] = jnp.ones(shape[1:], dtype)
        ws_ref[buf, 1, 0] = jnp.zeros(shape[1:], dtype)

    def column(n, c):
        t0, th = (c[0], c[1]), (c[2], c[3])
        buf = lax.rem(n, 2)
        for p in range(2):
            ws_ref[buf, p, pl.ds(1, rays)] = t0[p]
        _sync(interpret)
        r0 = (ws_ref[buf, 0, pl.ds(0, rays)], ws_ref[buf, 1, pl.ds(0, rays)])
        for p in range(2):  # the last ray's D0 leaves the grid: kept to rebuild the state
            lost_ref[n, p] = ws_ref[buf, p, rays]
        rh = _mul(th, ph)
        diag, up, down = _column(k_ref, n)
        t0 = _add(_mul(diag, r0), _mul(up, rh))
        th = _add(_mul(down, r0), _mul(diag, rh))
        return (*t0, *th)

    one, zero = jnp.ones(shape, dtype), jnp.zeros(shape, dtype)
    final = lax.fori_loop(0, lay.nx, column, (one, zero, zero, zero))
    for j in range(4):
        state_ref[j] = final[j]


def _forward_call(kk: jax.Array, ph: jax.Array, lay: _Layout, interpret: bool):
    """The forward pallas_call: final state (4, rays, A, B) and lost values (nx, 2, A, B)."""
    dtype = kk.dtype
    a_p, b_p = lay.na * lay.ta, lay.nb * lay.tb
    out_shape = (
        jax.ShapeDtypeStruct((4, lay.rays, a_p, b_p), dtype),
        jax.ShapeDtypeStruct((lay.nx, 2, a_p, b_p), dtype),
        jax.ShapeDtypeStruct((2, 2, lay.rays + 1, a_p, b_p), dtype),  # workspace
    )
    call = pl.pallas_call(
        partial(_fwd_kernel, lay=lay, interpret=interpret),
        out_shape=out_shape,
        grid=(lay.na, lay.nb),
        in_specs=[_k_spec(lay), _phase_spec(lay)],
        out_specs=[
            _state_spec((4, lay.rays), lay),
            _state_spec((lay.nx, 2), lay),
            _state_spec((2, 2, lay.rays + 1), lay),
        ],
        interpret=interpret,
        compiler_params=TRITON,
        name="fused_march_fwd",
    )
    state, lost, _ = call(kk, ph)
    return state, lost


def _exit(state: jax.Array, lay: _Layout) -> jax.Array:
    """The th state of the kernels, cropped, as the exit field (nrays, nbatch, nangles)."""
    th = lax.complex(state[2], state[3])[: lay.nrays, : lay.nangles, : lay.nbatch]
    return jnp.swapaxes(th, 1, 2)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _fused(k: ShearedCoefficients, phase_step: jax.Array, interpret: bool) -> jax.Array:
    """pallas_march with an explicit interpret flag: (nrays, nbatch, nangles), complex."""
    lay = _layout(*k.diag.shape, phase_step.shape[0])
    state, _ = _forward_call(_split_k(k, lay), _split_phase(phase_step, lay), lay, interpret)
    return _exit(state, lay)


def _fused_fwd(k, phase_step, interpret):
    lay = _layout(*k.diag.shape, phase_step.shape[0])
    kk, ph = _split_k(k, lay), _split_phase(phase_step, lay)
    state, lost = _forward_call(kk, ph, lay, interpret)
    return _exit(state, lay), (kk, ph, lost, state, phase_step)


def _angle_sum(a: Pair, b: Pair) -> Pair:
    re, im = _mul(a, b)
    return jnp.sum(re, axis=1), jnp.sum(im, axis=1)


def _add_ct(ctk_ref, n, parts: tuple[Pair, Pair, Pair], lay: _Layout) -> None:
    # every angle tile's program adds into the same K cotangent: atomically on a GPU
    # (interpret mode runs the programs one after another and adds the same way)
    rows, cols = pl.ds(0, lay.rays), pl.ds(0, lay.tb)
    for j, part in enumerate(parts):
        for p in range(2):
            plgpu.atomic_add(ctk_ref, (n, jnp.asarray(2 * j + p, n.dtype), rows, cols), part[p])


def _bwd_kernel(
    k_ref, ph_ref, lost_ref, state_ref, ct_ref, _, ctk_ref, acc_ref, ws_ref, *, lay, interpret
):
    """Reverse march of one tile; ws (state / adjoint, 2 buffers, re/im, rays + 1, ta, tb)."""
    rays = lay.rays
    ph = (ph_ref[0][None, :, None], ph_ref[1][None, :, None])
    inv_ph = _inv(ph)  # once: a complex divide per point costs several multiplies
    zero = jnp.zeros((lay.ta, lay.tb), state_ref.dtype)
    for buf in range(2):  # no adjoint D0 enters from below the last ray
        for p in range(2):
            ws_ref[1, buf, p, rays] = zero

    def column(j, c):
        n = lay.nx - 1 - j
        l0, lh, acc, t0, th = (c[0], c[1]), (c[2], c[3]), (c[4], c[5]), (c[6], c[7]), (c[8], c[9])
        diag, up, down = _column(k_ref, n)
        idet = _inv(_add(_mul(diag, diag), _mul((-up[0], -up[1]), down)))
        idiag, iup, idown = _mul(diag, idet), _mul(up, idet), _mul(down, idet)
        r0 = _add(_mul(idiag, t0), _mul((-iup[0], -iup[1]), th))  # the column's inputs
        rh = _add(_mul(idiag, th), _mul((-idown[0], -idown[1]), t0))
        c0 = _add(_mul(diag, l0), _mul(down, lh))  # the adjoint of those inputs
        ch = _add(_mul(up, l0), _mul(diag, lh))
        ct_diag = _add(_angle_sum(l0, r0), _angle_sum(lh, rh))
        _add_ct(ctk_ref, n, (ct_diag, _angle_sum(l0, rh), _angle_sum(lh, r0)), lay)
        buf = lax.rem(j, 2)
        for p in range(2):  # shift both up one ray: lost D0 enters the state at the bottom
            ws_ref[0, buf, p, pl.ds(0, rays)] = r0[p]
            ws_ref[0, buf, p, rays] = lost_ref[n, p]
            ws_ref[1, buf, p, pl.ds(0, rays)] = c0[p]
        _sync(interpret)
        t0 = (ws_ref[0, buf, 0, pl.ds(1, rays)], ws_ref[0, buf, 1, pl.ds(1, rays)])
        l0 = (ws_ref[1, buf, 0, pl.ds(1, rays)], ws_ref[1, buf, 1, pl.ds(1, rays)])
        return (*l0, *_mul(ch, ph), *_add(acc, _mul(ch, rh)), *t0, *_mul(rh, inv_ph))

    ct = (ct_ref[0], ct_ref[1])
    zeros = jnp.zeros_like(ct[0])
    init = (zeros, zeros, *ct, zeros, zeros, *(state_ref[i] for i in range(4)))
    final = lax.fori_loop(0, lay.nx, column, init)
    acc_ref[0] = final[4]
    acc_ref[1] = final[5]


def _backward_call(kk, ph, lost, state, ct, lay: _Layout, interpret: bool):
    """The backward pallas_call: ct of K (nx, 6, rays, B), summed over the angles, and the
    accumulated ch rh (2, rays, A, B)."""
    dtype = kk.dtype
    a_p, b_p = lay.na * lay.ta, lay.nb * lay.tb
    out_shape = (
        jax.ShapeDtypeStruct(kk.shape, dtype),  # aliased to the zeros it starts from
        jax.ShapeDtypeStruct((2, lay.rays, a_p, b_p), dtype),
        jax.ShapeDtypeStruct((2, 2, 2, lay.rays + 1, a_p, b_p), dtype),  # workspace
    )
    ctk_spec = pl.BlockSpec((lay.nx, 6, lay.rays, lay.tb), lambda a, b: (0, 0, 0, b))
    call = pl.pallas_call(
        partial(_bwd_kernel, lay=lay, interpret=interpret),
        out_shape=out_shape,
        grid=(lay.na, lay.nb),
        in_specs=[
            _k_spec(lay),
            _phase_spec(lay),
            _state_spec((lay.nx, 2), lay),
            _state_spec((4, lay.rays), lay),
            _state_spec((2, lay.rays), lay),
            ctk_spec,
        ],
        out_specs=[
            ctk_spec,
            _state_spec((2, lay.rays), lay),
            _state_spec((2, 2, 2, lay.rays + 1), lay),
        ],
        input_output_aliases={5: 0},
        interpret=interpret,
        compiler_params=TRITON,
        name="fused_march_bwd",
    )
    ctk, acc, _ = call(kk, ph, lost, state, ct, jnp.zeros_like(kk))
    return ctk, acc


def _fused_bwd(interpret, res, ct_out):
    kk, ph, lost, state, phase_step = res
    lay = _layout(kk.shape[0], *ct_out.shape)
    ctk, acc = _backward_call(kk, ph, lost, state, _split_field(ct_out, lay), lay, interpret)
    ctk = ctk[:, :, : lay.nrays, : lay.nbatch]
    ct_k = ShearedCoefficients(*(lax.complex(ctk[:, 2 * j], ctk[:, 2 * j + 1]) for j in range(3)))
    acc = lax.complex(acc[0], acc[1])[: lay.nrays, : lay.nangles, : lay.nbatch]
    return ct_k, jnp.sum(acc, axis=(0, 2)) / phase_step


_fused.defvjp(_fused_fwd, _fused_bwd)
