"""The quantized GRU's recurrence (docs/gru.md): the three-array `Gru` form, whole sequences, no Python loop
per time step.

Per step, with h the Q7 hidden code (h = h_q/128), integer codes held in float32 (exact: the caller picks
float64 when an accumulator could pass 2^24):
    zr array:  acc_zr = Azr_x[t] + Hz[t]·Wzr               (Azr_x: the x part and bias, precomputed for all t)
               y_zr = R(clip(acc·kzr, Y(yb)))            (kzr = sy/(sx·sw) without noise, 1/G with noise)
               z_q, r_q = LUT_sig[y_zr]                   (first H outputs z, next H r)
    hn array:  y_hn = R(clip((bias_hn + Hh[t]·Whn)·khn, Y(yb)))
    in array:  y_in = R(clip(v_in[t], Y(yb)))             (v_in precomputed for all t)
    rhn = ⌊r_q·y_hn / 2^7⌋;  n_pre = y_in + rhn;  n_q = LUT_tanh[clip(n_pre, Y(yb))]
    h' = clip(⌊((ones - z_q)·n_q + z_q·h_q) / 2^7⌋, -128, 127)
Input codes of h for an array with scale sx: PN: hp = clip(R(relu(h)·sx), 0, 255), hn = clip(R(relu(-h)·sx)),
FALSE: hp = clip(R(h·sx), 0, 255), hn = 0. The A rows Hz[t], Hh[t] of the recurrent products are, per array,
either the difference hp - hn (Kr = H columns, weights Wp: without noise Wn = -Wp, and FALSE has hn = 0) or
`stacked` [hp, hn] (Kr = 2H, weights [Wp; Wn]: PN with noise, where Wn ≠ -Wp).

Each step's recurrent products are small GEMMs (batch rows x Kr x columns) on the register tile of `tile`,
accumulated in place into the saved accumulators; the weight columns are padded to a multiple of LANES.
The float64 case (sums past 2^24) runs the same products as plain loops (`acc_rows`).
"""
import math

import numba
import numpy as np
from numba import types
from numba.extending import overload

from ._jit import OPTIONS, kernel
from .tile import rows_fma

__all__ = ["gru_q_forward", "gru_q_backward", "acc_rows"]

_OFF0 = np.zeros(1, np.int64)


def acc_rows(n, ncols, A, a0, ps, nk, Bm, ldb, Cm, c0, ldc, accum):
    """For p < n, o < ncols (flat 1-D arrays):
        Cm[c0 + p·ldc + o] (+)= Σ_{k < nk} A[a0 + p·ps + k] · Bm[k·ldb + o]
    float32 arrays: the register tile (ncols a multiple of LANES); any other dtype: loops in order k."""
    raise NotImplementedError("acc_rows runs only inside compiled kernels")


@overload(acc_rows)
def _acc_rows(n, ncols, A, a0, ps, nk, Bm, ldb, Cm, c0, ldc, accum):
    if all(a.dtype == types.float32 for a in (A, Bm, Cm)):
        def tiled(n, ncols, A, a0, ps, nk, Bm, ldb, Cm, c0, ldc, accum):
            rows_fma(n, ncols, A, a0, ps, _OFF0, 1, 1, nk, Bm, 0, ldb, Cm, c0, ldc, accum)
        return tiled

    def loops(n, ncols, A, a0, ps, nk, Bm, ldb, Cm, c0, ldc, accum):
        for p in range(n):
            c = c0 + p * ldc
            if not accum:
                for o in range(ncols):
                    Cm[c + o] = 0
            for k in range(nk):
                a = A[a0 + p * ps + k]
                for o in range(ncols):
                    Cm[c + o] += a * Bm[k * ldb + o]
    return loops


@numba.njit(inline="always", **OPTIONS)
def _h_codes(v, sx_zr, sx_hn, pn, stacked, hz, hh, b, t, j, H):
    """Input codes of the hidden value v (real, float64: the codes are exact integers) for the zr and hn
    arrays, written to hz[b, t, j] and hh[b, t, j] (and [.., H + j] when stacked). Inlined: as a call it
    cost more than the rest of the step's element-wise work."""
    if pn:
        pz = min(max(np.rint(max(v, 0.0) * sx_zr), 0.0), 255.0)
        nz = min(max(np.rint(max(-v, 0.0) * sx_zr), 0.0), 255.0)
        ph = min(max(np.rint(max(v, 0.0) * sx_hn), 0.0), 255.0)
        nh = min(max(np.rint(max(-v, 0.0) * sx_hn), 0.0), 255.0)
        if stacked:
            hz[b, t, j] = pz
            hz[b, t, H + j] = nz
            hh[b, t, j] = ph
            hh[b, t, H + j] = nh
        else:
            hz[b, t, j] = pz - nz
            hh[b, t, j] = ph - nh
    else:
        hz[b, t, j] = min(max(np.rint(v * sx_zr), 0.0), 255.0)
        hh[b, t, j] = min(max(np.rint(v * sx_hn), 0.0), 255.0)


# Fields of the forward's saved (N, T, NF, H) array: the hidden codes, then the factors that turn dL/dh' into
# every gradient of the step (so the backward's element-wise work is a few multiplies):
#   dL/d acc_z = g·FZ,  dw = dL/d n_pre(real) = g·FW,  dL/d acc_r = dw·FR,  dL/d acc_hn = dw·FH,
#   dL/d acc_in = dw·FI,  dL/dh (direct path) = g·FD
HQ, FZ, FW, FR, FH, FI, FD = range(7)
NF = 7


@kernel
def gru_q_forward(azr, ahn, v_in, h0, wzr, whn, sx_zr, sx_hn, kzr, khn, czr, chn, cin, sy_n, yb, pn, stacked, ones,
                  lut_sig, lut_tanh, dsig, dtanh, F, hz, hh):
    """One call for the whole sequence. Shapes (N batch, T steps, H hidden, Kr = 2H if stacked else H):
    azr (N, T, Cz) dt: in: the x part + bias of the zr array (columns ≥ 2H are padding); out: its full
        accumulator.  ahn (N, T, Ch) dt: in: bias of the hn array; out: its accumulator.  dt: float32 when
        exact (the caller checks the 2^24 bound), else float64.
    v_in (N, T, H) the in array's output before rounding; h0 (N, H) float32 Q7 codes.
    wzr (Kr, Cz), whn (Kr, Ch) dt: the h rows of the zr and hn arrays ([Wp; Wn] when stacked), padded columns.
    czr, chn, cin: d(real output)/d(accumulator) of the arrays (1/(sx·sw), or 1/(G·sy) with noise); sy_n the
    scale of n_pre.  lut_sig, lut_tanh, dsig (σ'), dtanh (tanh', 0 where the LUT output clips): float32
    (2^yb,), index code + 2^(yb-1).
    Outputs: F (N, T, NF, H) float32: field HQ the h' codes, FZ..FD the backward factors (see above), with
    the straight-through masks of every clip folded in; hz, hh (N, T, Kr) dt: the h input codes (the A rows
    of the recurrent products, and of the weight gradients).
    """
    N, T, Cz = azr.shape
    Ch = ahn.shape[2]
    H = h0.shape[1]
    Kr = hz.shape[2]
    lo = -(1 << (yb - 1))
    hi = (1 << (yb - 1)) - 1
    off = 1 << (yb - 1)
    az, ah, wz, wh = azr.reshape(azr.size), ahn.reshape(ahn.size), wzr.reshape(wzr.size), whn.reshape(whn.size)
    hzf, hhf = hz.reshape(hz.size), hh.reshape(hh.size)  # flat views for the tile
    for b in range(N):
        for j in range(H):
            _h_codes(h0[b, j] / 128.0, sx_zr, sx_hn, pn, stacked, hz, hh, b, 0, j, H)
    for t in range(T):
        acc_rows(N, Cz, hzf, t * Kr, T * Kr, Kr, wz, Cz, az, t * Cz, T * Cz, True)
        acc_rows(N, Ch, hhf, t * Kr, T * Kr, Kr, wh, Ch, ah, t * Ch, T * Ch, True)
        for b in range(N):
            for j in range(H):
                vz = azr[b, t, j] * kzr
                vr = azr[b, t, H + j] * kzr
                cz = int(min(max(np.rint(vz), lo), hi)) + off
                cr = int(min(max(np.rint(vr), lo), hi)) + off
                z = np.float64(lut_sig[cz])
                r = np.float64(lut_sig[cr])
                vh = ahn[b, t, j] * khn
                yh = min(max(np.rint(vh), lo), hi)
                vi = v_in[b, t, j]
                s = min(max(np.rint(vi), lo), hi) + math.floor(r * yh / 128.0)
                cs = int(min(max(s, lo), hi)) + off
                nn = np.float64(lut_tanh[cs])
                hp = np.float64(F[b, t - 1, HQ, j] if t > 0 else h0[b, j])
                # z in [0, ones] and n, hp in [-128, 127]: the sum is within ones·[-128, 127], so this clip to
                # Q7 never acts (and passes every gradient)
                hnew = min(max(math.floor(((ones - z) * nn + z * hp) / 128.0), -128.0), 127.0)
                mz = 1.0 if lo <= vz <= hi else 0.0
                mr = 1.0 if lo <= vr <= hi else 0.0
                ms = 1.0 if lo <= s <= hi else 0.0
                F[b, t, HQ, j] = hnew
                F[b, t, FZ, j] = (hp - nn) / 16384.0 * ones * (dsig[cz] * mz) * czr
                F[b, t, FW, j] = (ones - z) / 128.0 * (dtanh[cs] * ms)
                F[b, t, FR, j] = yh / sy_n / 128.0 * ones * (dsig[cr] * mr) * czr
                F[b, t, FH, j] = r / 128.0 * (1.0 if lo <= vh <= hi else 0.0) * chn
                F[b, t, FI, j] = (1.0 if lo <= vi <= hi else 0.0) * cin
                F[b, t, FD, j] = z / 128.0
                if t + 1 < T:
                    _h_codes(hnew / 128.0, sx_zr, sx_hn, pn, stacked, hz, hh, b, t + 1, j, H)
    return F


@kernel
def gru_q_backward(dhs, h0, F, wzrT, whnT, sx_zr, sx_hn, pn, stacked, G, dh0):
    """Straight-through backward through time of `gru_q_forward` (all gradients in real units, float32).

    dhs (N, T, H) dL/dh_t (real h = code/128); F the forward's saved (N, T, NF, H); wzrT (2H, Ca), whnT (H, Ca)
    float32: the h rows' weights transposed ([Wpᵀ | Wnᵀ] when stacked), columns padded (Ca ≥ Kr, a multiple of
    LANES).
    Outputs: G (N, T, 4H) = [dL/d acc_zr (2H) | dL/d acc_hn (H) | dL/d acc_in (H)], dh0 (N, H).
    """
    N, T, H = dhs.shape
    Ca = wzrT.shape[1]
    dh = np.zeros((N, H), np.float32)
    a1 = np.empty((N, Ca), np.float32)
    a2 = np.empty((N, Ca), np.float32)
    gf, wz, wh = G.reshape(G.size), wzrT.reshape(wzrT.size), whnT.reshape(whnT.size)
    a1f, a2f = a1.reshape(a1.size), a2.reshape(a2.size)
    H4 = 4 * H
    for t in range(T - 1, -1, -1):
        for b in range(N):
            for j in range(H):
                g = dh[b, j] + dhs[b, t, j]
                dw = g * F[b, t, FW, j]
                G[b, t, j] = g * F[b, t, FZ, j]
                G[b, t, H + j] = dw * F[b, t, FR, j]
                G[b, t, 2 * H + j] = dw * F[b, t, FH, j]
                G[b, t, 3 * H + j] = dw * F[b, t, FI, j]
                dh[b, j] = g * F[b, t, FD, j]
        acc_rows(N, Ca, gf, t * H4, T * H4, 2 * H, wz, Ca, a1f, 0, Ca, False)  # a1 = dL/d acc_zr @ W_zr,hᵀ
        acc_rows(N, Ca, gf, t * H4 + 2 * H, T * H4, H, wh, Ca, a2f, 0, Ca, False)
        for b in range(N):
            for k in range(H):  # through the h input codes of both arrays (d code/dh = ±sx inside the clip)
                v = np.float32(F[b, t - 1, HQ, k] if t > 0 else h0[b, k]) * np.float32(1.0 / 128.0)
                uz, uh = v * sx_zr, v * sx_hn
                if pn:  # hp for v > 0, hn for v < 0 (relu'(0) = 0); hn's row is -Wn (= Wp unless stacked)
                    pz = sx_zr if 0 < uz <= 255.0 else 0.0
                    nz = sx_zr if -255.0 <= uz < 0 else 0.0
                    ph = sx_hn if 0 < uh <= 255.0 else 0.0
                    nh = sx_hn if -255.0 <= uh < 0 else 0.0
                    if stacked:
                        d = pz * a1[b, k] - nz * a1[b, H + k] + ph * a2[b, k] - nh * a2[b, H + k]
                    else:
                        d = (pz + nz) * a1[b, k] + (ph + nh) * a2[b, k]
                else:
                    d = (sx_zr if 0 <= uz <= 255.0 else 0.0) * a1[b, k] + (sx_hn if 0 <= uh <= 255.0 else 0.0) * a2[b, k]
                dh[b, k] += d
    for b in range(N):
        for j in range(H):
            dh0[b, j] = dh[b, j]
    return dh0
