"""Conv2d and ConvTranspose2d products as direct convolutions (no im2row matrix), channels-last.

Three operations cover both layers, forward and backward (x, y, g NHWC; wmat as in `ops`):
    conv2d(x, wmat)            acc of a Conv2d                         (B·Ho·Wo, O)
    conv_transpose(x, wmat)    acc of a ConvTranspose2d, and Conv2d's input gradient (same weight matrix)
    conv2d_dw(x, g)            Conv2d's weight gradient, and ConvTranspose2d's with x and g swapped
ConvTranspose2d's input gradient is conv2d of its output gradient.

conv_transpose splits the output plane into stride_h x stride_w phases: the output pixels (s·q + r) of one
phase see a fixed subset of kernel taps, each at a fixed input offset, so every phase is a stride-1 direct
convolution and no zero-inserted input is built.

Integer codes: each output sums at most kh·kw·C/g products; when that count times max|x|·max|w| stays
below 2^24 the float32 result is exact (the callers check with `exact_block`).
"""
from __future__ import annotations

import functools

import numpy as np

from ... import kernels as K
from ...kernels.simd.tile import LANES, lanes_up as _up
from ...memory import empty, zeros

__all__ = ["padded_input", "conv2d", "conv_transpose", "convT_padding", "conv2d_dw"]

f32 = np.float32


def _pad(x, top, bottom, left, right, fill=0.0):
    B, H, W, C = x.shape
    out = empty((B, H + top + bottom, W + left + right, C))
    K.pad_nhwc(np.ascontiguousarray(x, dtype=f32), top, left, fill, out, n=out.size)
    return out


def _wb(w3, kc, og):
    """(G, og, T·kc) weight rows -> the tile's (G, T·kc, ogp) column-padded B matrix."""
    G = w3.shape[0]
    wb = np.zeros((G, w3.shape[2], _up(og)), f32)
    wb[:, :, :og] = w3.transpose(0, 2, 1)
    return wb


def _unpad(out, G, og):
    ogp = _up(og)
    return out if ogp == og else np.ascontiguousarray(out.reshape(-1, G, ogp)[:, :, :og]).reshape(-1, G * og)


def padded_input(x, geo, pad=0.0):
    """x (B, H, W, C) -> (B, H + 2·ph, W + 2·pw, C) float32 filled with `pad`: the input `conv2d` and
    `conv2d_dw` read (pass it with padded=True to share one copy between forward and backward)."""
    return _pad(x, geo.ph, geo.ph, geo.pw, geo.pw, pad)


def _out_size(geo, Hp, Wp, out_hw):
    Ho, Wo = geo.conv_out(Hp - 2 * geo.ph, Wp - 2 * geo.pw)
    if out_hw is None:
        return Ho, Wo
    if out_hw[0] > Ho or out_hw[1] > Wo:  # the tile reads without bounds checks: refuse, never overrun
        raise ValueError(f"conv2d: out_hw {tuple(out_hw)} exceeds the full output ({Ho}, {Wo})")
    return tuple(out_hw)


def conv2d(x, wmat, geo, pad=0.0, padded=False, out_hw=None):
    """x (B, H, W, C) float32, wmat (O, kh·kw·C/g) float32 -> acc (B·Ho·Wo, O) float32, (Ho, Wo).

    `pad` fills the padding (the code of a zero input on the array); with padded=True x is already
    `padded_input(x, geo, pad)`. out_hw: compute only the first (Ho, Wo) outputs of each image (a
    ConvTranspose2d's input gradient, when output_padding gave it rows no input pixel reaches)."""
    xp = x if padded else padded_input(x, geo, pad)
    B, Hp, Wp, C = xp.shape
    G, O = geo.groups, wmat.shape[0]
    cg, og = C // G, O // G
    Ho, Wo = _out_size(geo, Hp, Wp, out_hw)
    T = geo.kh * geo.kw
    tap = np.array([(i * geo.dh * Wp + j * geo.dw) * C for i in range(geo.kh) for j in range(geo.kw)], np.int64)
    wb = _wb(wmat.reshape(G, og, T * cg), cg, og)
    ldc = G * wb.shape[2]
    b, oh = np.divmod(np.arange(B * Ho, dtype=np.int64), Ho)
    arow = (b * Hp + oh * geo.sh) * Wp * C
    crow = (b * Ho + oh) * Wo * ldc
    out = empty((B * Ho * Wo, ldc))
    K.conv_rows(xp.ravel(), wb.ravel(), arow, crow, Wo, geo.sw * C, ldc, tap, cg, G, cg, wb.shape[2], out.ravel(),
                n=out.size)
    return _unpad(out, G, og), (Ho, Wo)


def _phase_taps(k, s, p, d, r):
    """Taps i of a transposed conv reaching output phase r (outputs s·q + r), and their input offsets."""
    taps = [i for i in range(k) if (r + p - i * d) % s == 0]
    return taps, [(r + p - i * d) // s for i in taps]


def _convT_phases(geo, Ho, Wo):
    rows = [_phase_taps(geo.kh, geo.sh, geo.ph, geo.dh, r) + ((Ho - r + geo.sh - 1) // geo.sh,) for r in range(geo.sh)]
    cols = [_phase_taps(geo.kw, geo.sw, geo.pw, geo.dw, r) + ((Wo - r + geo.sw - 1) // geo.sw,) for r in range(geo.sw)]
    return rows, cols


def convT_padding(geo, H, W, out_hw):
    """(top, bottom, left, right): the padding of the input (H, W) that `conv_transpose` reads, so that every
    tap of every output phase lands inside it."""
    return _convT_padding(geo, int(H), int(W), tuple(int(v) for v in out_hw))


@functools.lru_cache(maxsize=256)
def _convT_padding(geo, H, W, out_hw):
    rows, cols = _convT_phases(geo, *out_hw)

    def span(phases, size):
        lo = min([0] + [o for _, offs, n in phases if n > 0 for o in offs])
        hi = max([size - 1] + [n - 1 + o for _, offs, n in phases if n > 0 for o in offs])
        return -lo, hi - (size - 1)

    return span(rows, H) + span(cols, W)


def conv_transpose(x, wmat, geo, out_hw, xp=None):
    """Transposed convolution: x (B, H, W, Ci) float32, wmat (Ci, kh·kw·Co/g) float32 (taps (i, j), then the
    group's output channels) -> acc (B, Ho, Wo, Co) float32 for the output size out_hw = (Ho, Wo).
    xp: x already padded by `convT_padding` with zeros (else padded here)."""
    B, H, W, Ci = x.shape
    Ho, Wo = out_hw
    G = geo.groups
    cog = wmat.shape[1] // (geo.kh * geo.kw)
    top, bottom, left, right = convT_padding(geo, H, W, out_hw)
    want = (B, H + top + bottom, W + left + right, Ci)
    if xp is None:
        xp = _pad(x, top, bottom, left, right)
    elif xp.shape != want:
        raise ValueError(f"conv_transpose: padded input {xp.shape}; expected {want}")
    calls, ldc = _convT_plan(geo, B, H, W, Ci, Ho, Wo, cog, _use_joint(geo, Ho, Wo, cog))
    wext = np.zeros(wmat.size + 1, f32)  # the weights, then the zero the plans' absent taps and pad columns read
    wext[:-1] = wmat.ravel()
    out = empty((B, Ho, Wo, ldc))
    for widx, tap, arow, crow, n, ps, pc, kc, ag, ogp, work in calls:
        K.conv_rows(xp.ravel(), wext[widx], arow, crow, n, ps, pc, tap, kc, G, ag, ogp, out.ravel(), n=work)
    return _unpad(out.reshape(-1, ldc), G, cog).reshape(B, Ho, Wo, G * cog)


# None: `_joint_pays` decides; True / False force the joint column products on or off wherever they apply
# (groups 1, Wo a multiple of the stride), so tests can compare the two plans on any SIMD width.
JOINT_COLUMNS = None


def _use_joint(geo, Ho, Wo, cog):
    if geo.groups != 1 or Wo % geo.sw != 0:
        return False
    return _joint_pays(geo, Ho, Wo, cog) if JOINT_COLUMNS is None else bool(JOINT_COLUMNS)


@functools.lru_cache(maxsize=256)
def _joint_pays(geo, Ho, Wo, cog):
    """Whether the joint column product (`_convT_joint_columns`) beats one product per column phase: when a
    phase alone fills at most the tile's 2·LANES columns (the joint run of sw·cogp columns fills it better,
    16 -> 32 columns on AVX-512), or when the group's union of input columns multiplies no zero weight
    (k4 s2 p1: the same taps as the phases alone, in fewer and longer products, on either width)."""
    if geo.sw * _up(cog) <= 2 * LANES:
        return True
    _, cols = _convT_phases(geo, Ho, Wo)
    r0, U = _joint_start(cols, geo.sw, Wo // geo.sw)
    return len(U) * geo.sw == sum(len(oj) for _, oj, nw in cols if nw > 0)


def _joint_start(cols, sw, nq):
    """(r0, U): the output phase a joint group starts at, chosen for the smallest union U of input column
    offsets (relative to the group's input column w', in the order a phase visits them: descending)."""
    def union(r0):
        return sorted({o + (r < r0) for r, (_, oj, nw) in enumerate(cols) if nw > 0 for o in oj}, reverse=True)

    r0 = min(range(sw if nq > 1 else 1), key=lambda r: (len(union(r)), r))
    return r0, union(r0)


@functools.lru_cache(maxsize=64)
def _convT_plan(geo, B, H, W, Ci, Ho, Wo, cog, joint):
    """The `conv_rows` calls of `conv_transpose` for one geometry, as ([(widx, tap, arow, crow, n, ps, pc, kc,
    ag, ogp, work)], ldc) (joint: the column phases together, `_convT_joint_columns`): widx gathers a call's
    weight matrix from the flat weights, index Ci·kh·kw·cog standing for a zero. Made once per geometry
    (building the weight matrices and row tables with NumPy took ~0.25 ms a forward, 3 % of the B32 QAT
    step); the arrays are read-only."""
    G = geo.groups
    cig, cogp = Ci // G, _up(cog)
    ldc = G * cogp
    n_w = Ci * geo.kh * geo.kw * cog
    w5 = np.arange(n_w, dtype=np.int64).reshape(G, cig, geo.kh, geo.kw, cog)  # weight indices, not values
    rows, cols = _convT_phases(geo, Ho, Wo)
    top, bottom, left, right = convT_padding(geo, H, W, (Ho, Wo))
    Hp, Wp = H + top + bottom, W + left + right
    if joint:
        calls = _convT_joint_columns(w5, n_w, geo, rows, cols, B, Hp, Wp, Ci, Ho, Wo, ldc, top, left)
    else:
        calls = []
        for rh, (ti, oi, nh) in enumerate(rows):
            for rw, (tj, oj, nw) in enumerate(cols):
                if nh <= 0 or nw <= 0:
                    continue
                tap = np.array([(a * Wp + c) * Ci for a in oi for c in oj], np.int64)
                b, q = np.divmod(np.arange(B * nh, dtype=np.int64), nh)
                arow = ((b * Hp + q + top) * Wp + left) * Ci
                crow = ((b * Ho + geo.sh * q + rh) * Wo + rw) * ldc
                calls.append((_phase_weights(w5, n_w, ti, tj, cogp), tap, arow, crow, nw, Ci, geo.sw * ldc, cig, cig,
                              cogp, B * nh * nw * ldc))
    for c in calls:
        # the cached plan is shared: its gather index is frozen. The tables handed to conv_rows stay writeable
        # (conv_rows only reads them): Numba types a read-only array apart, and compiled conv_rows a second
        # time for them (2.4 s of a cold `witnp train`)
        c[0].flags.writeable = False
    return calls, ldc


def _phase_weights(w5, n_w, ti, tj, cogp):
    """Flat (G, ni·nj·cig, cogp) weight indices of the phase with taps ti x tj (tap-major, then channels);
    n_w (a zero) in the pad columns."""
    G, cig, _, _, cog = w5.shape
    wb = np.full((G, len(ti) * len(tj) * cig, cogp), n_w, np.int64)
    wb[:, :, :cog] = w5[:, :, ti][:, :, :, tj].transpose(0, 2, 3, 1, 4).reshape(G, -1, cog)
    return wb.ravel()


def _convT_joint_columns(w5, n_w, geo, rows, cols, B, Hp, Wp, Ci, Ho, Wo, ldc, top, left):
    """`_convT_plan`'s calls with all column phases of a row phase in one product (groups 1, Wo a multiple of
    sw). One phase alone is a 16-column product (cogp = 16), half the tile's rate; a group of sw adjacent
    output pixels is one run of sw·cogp values, so one product fills them together from the union of their
    column offsets, the weights of a phase's absent taps zero (exact: adding 0 changes no sum).

    The group starts at output column r0 (phases r0..sw-1 of input column w', then phases 0..r0-1 of
    w' + 1), r0 chosen for the smallest union: for k4 s2 p1, phase 0 reads input columns {w', w' - 1} and
    phase 1 {w' + 1, w'}, so the group (0, 1) reads three columns and does 1.5x the multiplies, while the
    group (1, 0 of the next) reads {w' + 1, w'} and does none in vain. With r0 > 0 the row's first r0 and
    last sw - r0 pixels are left over: each such column is a per-phase product running down the output
    rows (the tile's rows are then output rows; 1/16 of the pixels for B32 k4 s2 32x32)."""
    sw = geo.sw
    cog = w5.shape[4]
    nq = Wo // sw

    r0, U = _joint_start(cols, sw, nq)
    n_in = nq - (r0 > 0)  # groups inside the row
    calls = []
    for rh, (ti, oi, nh) in enumerate(rows):
        if nh <= 0:
            continue
        if n_in > 0:
            tap = np.array([(a * Wp + u) * Ci for a in oi for u in U], np.int64)
            wb = np.full((len(ti), len(U), Ci, sw, ldc), n_w, np.int64)
            for k in range(sw):  # the group's k-th pixel: phase r, of input column w' + (r < r0)
                r = (r0 + k) % sw
                tj, oj, _ = cols[r]
                for j, o in zip(tj, oj):
                    wb[:, U.index(o + (r < r0)), :, k, :cog] = w5[0][:, ti, j].transpose(1, 0, 2)  # (ni, Ci, cog)
            b, q = np.divmod(np.arange(B * nh, dtype=np.int64), nh)
            arow = ((b * Hp + q + top) * Wp + left) * Ci
            crow = ((b * Ho + geo.sh * q + rh) * Wo + r0) * ldc
            calls.append((wb.ravel(), tap, arow, crow, n_in, Ci, sw * ldc, Ci, Ci, sw * ldc, B * nh * n_in * sw * ldc))
        for r in range(sw) if r0 > 0 else ():  # the edge pixels: column sw·we + r of each output row
            tj, oj, _ = cols[r]
            we = 0 if r < r0 else nq - 1
            tap = np.array([(a * Wp + o) * Ci for a in oi for o in oj], np.int64)
            b = np.arange(B, dtype=np.int64)
            arow = ((b * Hp + top) * Wp + left + we) * Ci
            crow = ((b * Ho + rh) * Wo + sw * we + r) * ldc
            calls.append((_phase_weights(w5, n_w, ti, tj, ldc), tap, arow, crow, nh, Wp * Ci, geo.sh * Wo * ldc, Ci,
                          Ci, ldc, B * nh * ldc))
    return calls


def conv2d_dw(x, g, geo, pad=0.0, padded=False, out_hw=None):
    """Weight gradient of acc = conv2d(x, wmat): x (B, H, W, C), g (B·Ho·Wo, O) float32 -> (O, kh·kw·C/g).
    padded and out_hw as in `conv2d`."""
    xp = x if padded else padded_input(x, geo, pad)
    B, Hp, Wp, C = xp.shape
    G, O = geo.groups, g.shape[1]
    cg, og = C // G, O // G
    ogp = _up(og)
    Ho, Wo = _out_size(geo, Hp, Wp, out_hw)
    if g.shape[0] != B * Ho * Wo:
        raise ValueError(f"conv2d_dw: g has {g.shape[0]} rows; expected B·Ho·Wo = {B * Ho * Wo}")
    T = geo.kh * geo.kw
    if ogp != og:
        gp = zeros((g.shape[0], G, ogp))  # a step-sized array, like the conv outputs
        gp[:, :, :og] = g.reshape(-1, G, og)
        g = gp.reshape(-1, G * ogp)
    g = np.ascontiguousarray(g, dtype=f32)
    tap = np.array([(i * geo.dh * Wp + j * geo.dw) * C for i in range(geo.kh) for j in range(geo.kw)], np.int64)
    abase = np.arange(B, dtype=np.int64) * (Hp * Wp * C)
    rowoff = np.arange(Ho, dtype=np.int64) * (geo.sh * Wp * C)
    out = np.zeros((G, T, cg, ogp), f32)
    K.conv_dw_rows(xp.ravel(), g.ravel(), abase, rowoff, geo.sw * C, Wo, tap, cg, G, ogp, G * ogp, out.ravel(),
                   n=out.size)
    return np.ascontiguousarray(out[..., :og].reshape(G, T * cg, og).transpose(0, 2, 1)).reshape(O, T * cg)
