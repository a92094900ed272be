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
import numpy as np

from .._jit import jit, kernel
from ..quant.quantize import round_code
from ..simd.gather import lookup2
from ..simd.tile import acc_rows

__all__ = ["gru_q_forward", "gru_q_backward"]

# The step's element-wise work runs per batch row in short passes over contiguous rows, each touching few
# arrays, so that LLVM vectorizes the arithmetic ones (an all-in-one loop body ran scalar at ~50 ns per
# element: rint, clips and float-to-int conversions, six table reads); the table reads get passes of their own.

@jit
def _out_codes(acc, k, lo, hi, off, n, ci, m, track, fl):
    """Array outputs y = R(clip(acc·k)) (fl: ⌊clip(acc·k)⌋) as table indices ci = y + off (int32), and the clip
    masks m (float32),
    for the first n columns of the accumulator row acc. k, a power of two (sy/(sx·sw) or 1/G), comes in acc's
    dtype: acc·k is then exact in that dtype, and float32 rows vectorize twice as wide as float64 ones.
    Returns max |acc| over the n columns when `track`, else 0. Tracking runs only without noise, where acc
    holds integers: the maximum is taken over int64, as a float max reduction does not vectorize without
    fastmath."""
    z = k - k
    flo, fhi = z + np.float32(lo), z + np.float32(hi)
    for j in range(n):
        v = acc[j] * k
        ci[j] = np.int32(min(max(round_code(v, fl), flo), fhi)) + off
        m[j] = np.float32(1.0) if (v >= flo) & (v <= fhi) else np.float32(0.0)
    mx = 0
    if track:
        for j in range(n):
            mx = max(mx, abs(np.int64(acc[j])))
    return np.float64(mx)


@jit
def _n_pre(ci_in, ci_hn, r, off, lo, hi, n, cs, ms):
    """n_pre = y_in + ⌊r·y_hn/2^7⌋ (float32: every term an integer below 2^17) as tanh table indices cs, with
    the clip masks ms."""
    flo, fhi = np.float32(lo), np.float32(hi)
    for j in range(n):
        s = np.float32(ci_in[j] - off) + np.floor(r[j] * np.float32(ci_hn[j] - off) * np.float32(1 / 128))
        cs[j] = np.int32(min(max(s, flo), fhi)) + off
        ms[j] = np.float32(1.0) if (s >= flo) & (s <= fhi) else np.float32(0.0)


@jit
def _h_codes(h, n, sx_zr, sx_hn, pn, stacked, hz, hh):
    """Input codes of the hidden codes h (n entries, real value h/128) for the zr and hn arrays, into the rows
    hz, hh ([pos | neg] when stacked, pos - neg when not; FALSE: clip(R(v·sx), 0, 255)). float32 is exact:
    h·sx/128 with sx a power of two."""
    z0, c255 = np.float32(0.0), np.float32(255.0)
    fz, fh = np.float32(sx_zr / 128.0), np.float32(sx_hn / 128.0)
    if pn and stacked:
        for j in range(n):
            v = h[j]
            hz[j] = min(max(np.rint(max(v, z0) * fz), z0), c255)
            hz[n + j] = min(max(np.rint(max(-v, z0) * fz), z0), c255)
            hh[j] = min(max(np.rint(max(v, z0) * fh), z0), c255)
            hh[n + j] = min(max(np.rint(max(-v, z0) * fh), z0), c255)
    elif pn:
        for j in range(n):
            v = h[j]
            hz[j] = min(max(np.rint(max(v, z0) * fz), z0), c255) - min(max(np.rint(max(-v, z0) * fz), z0), c255)
            hh[j] = min(max(np.rint(max(v, z0) * fh), z0), c255) - min(max(np.rint(max(-v, z0) * fh), z0), c255)
    else:
        for j in range(n):
            hz[j] = min(max(np.rint(h[j] * fz), z0), c255)
            hh[j] = min(max(np.rint(h[j] * fh), z0), c255)


# Fields of the forward's saved (T, N, NF, H) array: the hidden codes, then the factors that turn dL/dh' into
# every gradient of the step (so the backward's element-wise work is one multiply per output):
#   dL/d acc_z = g·FZ,  dL/d acc_r = g·FR,  dL/d acc_hn = g·FH,  dL/d acc_in = g·FI,  dL/dh (direct path) = g·FD
HQ, FZ, FR, FH, FI, FD = range(6)
NF = 6


@jit
def _factors(zr, nq, hp, d2, dn, ch, mh, mi, k, H, Fr, y):
    """k = (off, ones, kfz, kfr, kfh, cin) (a tuple: free in Numba). h' codes and the backward factors of one
    batch row into Fr (NF, H) (see the field list above), and
    the real h' = code/128 into y (H,). dn (H,), tanh' at n_pre (masked), is overwritten with dL/d n_pre
    per unit of dL/dh', the common factor of FR, FH and FI."""
    off, ones, kfz, kfr, kfh, cin = k
    f4 = np.float32
    q = f4(1 / 128)
    for j in range(H):
        z = zr[j]
        # z in [0, ones] and n, hp in [-128, 127]: the sum lies within ones·[-128, 127] (exact in float32),
        # so h' needs no clip to Q7 and passes every gradient
        hq = np.floor(((ones - z) * nq[j] + z * hp[j]) * q)
        Fr[HQ, j] = hq
        y[j] = hq * q
        Fr[FD, j] = z * q
        Fr[FZ, j] = (hp[j] - nq[j]) * kfz * d2[j]
        dn[j] = (ones - z) * q * dn[j]  # dL/d n_pre (real) per unit g
    for j in range(H):
        w = dn[j]
        Fr[FR, j] = w * (f4(ch[j] - off) * kfr * d2[H + j])
        Fr[FH, j] = w * (zr[H + j] * kfh * mh[j])
        Fr[FI, j] = w * (mi[j] * cin)


@jit
def _bias_rows(acc, bias, N, C):
    """acc (N, C) (+)= bias (C,) on every row."""
    for b in range(N):
        for j in range(C):
            acc[b, j] += bias[j]


@kernel(raw=True)
def gru_q_forward(xz, xi, h0, wzx, wix, wzr, whn, bias, tables, params, F, hz, hh, amax_acc, y):
    """One call for the whole sequence, time-major (each step's rows are one contiguous block, which the
    hardware prefetchers follow; batch-major rows at a stride of T rows ran the step 5x slower). The three
    arrays' accumulators live in per-step scratch rows, x part included, so they never go to memory.
    Shapes (T steps, N batch, I input, H hidden; Kx = 2I and Kr = 2H if stacked, else I and H; Cz, Ci, Ch:
    2H, H, H padded to a multiple of LANES); dt: float32 when exact (the caller checks the 2^24 bound), else
    float64:
    xz, xi (T, N, Kx) dt: the x input codes of the zr and in arrays ([pos | neg] when stacked, pos - neg when
        not); h0 (N, H) float32 Q7 codes.
    wzx (Kx, Cz), wix (Kx, Ci): the x rows of the zr and in arrays; wzr (Kr, Cz), whn (Kr, Ch): the h rows of
        the zr and hn arrays ([Wp; Wn] when stacked), all dt with zero padding columns; bias (Cz + Ci + Ch,) dt:
        the bias terms bzr, bin_, bhn of the three arrays one after the other.
    kzr, kin, khn: output = accumulator·k (sy/(sx·sw) without noise, 1/G with noise: powers of two); czr, chn,
        cin: d(real output)/d(accumulator) (1/(sx·sw), or 1/(G·sy) with noise); sy_n the scale of n_pre.
    tables (4, 2^yb) float32: the rows lut_sig, lut_tanh, dsig (σ'), dtanh (tanh', 0 where the LUT output
        clips), index code + 2^(yb-1).
    params (15,) float64: sx_zr, sx_hn (the h codes' scales), kzr, kin, khn, czr, chn, cin, sy_n (below), then
        yb, pn, stacked, ones, track, floor (LayerConfig.rounding "floor": the arrays round down) as numbers.
    Outputs: F (T, N, NF, H) float32: field HQ the h' codes, FZ..FD the backward factors (see above), with
    the straight-through masks of every clip folded in; hz, hh (T, N, Kr) dt: the h input codes (the A rows
    of the recurrent products, and of the weight gradients; one array when sx_zr = sx_hn); amax_acc (3,) float64: max |accumulator| of the
    zr, hn and in arrays over the sequence, when `track` (auto-scale statistics); y (N, T, H) float32 the
    real h' (codes/128), batch-major like the layer's output.
    """
    sx_zr, sx_hn, kzr, kin, khn = params[0], params[1], params[2], params[3], params[4]
    czr, chn, cin, sy_n = params[5], params[6], params[7], params[8]
    yb, pn, stacked, ones, track = int(params[9]), params[10] != 0, params[11] != 0, int(params[12]), params[13] != 0
    fl = params[14] != 0
    lut_sig, lut_tanh, dsig, dtanh = tables[0], tables[1], tables[2], tables[3]
    T, N, Kx = xz.shape
    Cz, Ci, Ch = wzx.shape[1], wix.shape[1], whn.shape[1]
    bzr, bin_, bhn = bias[:Cz], bias[Cz:Cz + Ci], bias[Cz + Ci:]
    H = h0.shape[1]
    Kr = hz.shape[2]
    lo = -(1 << (yb - 1))
    hi = (1 << (yb - 1)) - 1
    off = 1 << (yb - 1)
    dt = hz.dtype
    az, ai, ah = np.empty((N, Cz), dt), np.empty((N, Ci), dt), np.empty((N, Ch), dt)
    azf, aif, ahf = az.reshape(az.size), ai.reshape(ai.size), ah.reshape(ah.size)  # flat views for the tile
    xzf, xif, hzf, hhf = xz.reshape(xz.size), xi.reshape(xi.size), hz.reshape(hz.size), hh.reshape(hh.size)
    wzxf, wixf, wzf, whf = wzx.reshape(wzx.size), wix.reshape(wix.size), wzr.reshape(wzr.size), whn.reshape(whn.size)
    f4 = np.float32
    ci2, m2, zr, d2 = np.empty(2 * H, np.int32), np.empty(2 * H, f4), np.empty(2 * H, f4), np.empty(2 * H, f4)
    ch, mh, cn, mi, cs, ms, nq, dn = (np.empty(H, np.int32), np.empty(H, f4), np.empty(H, np.int32), np.empty(H, f4),
                                      np.empty(H, np.int32), np.empty(H, f4), np.empty(H, f4), np.empty(H, f4))
    kfz, kfr, kfh = f4(ones / 16384.0 * czr), f4(ones / 128.0 / sy_n * czr), f4(chn / 128.0)
    amax_acc[:] = 0.0
    kk = np.empty(3, dt)  # the output factors in the accumulators' dtype (powers of two: exact)
    kk[0], kk[1], kk[2] = kzr, khn, kin
    for b in range(N):
        _h_codes(h0[b], H, sx_zr, sx_hn, pn, stacked, hz[0, b], hh[0, b])
    for t in range(T):
        acc_rows(N, Cz, xzf, t * N * Kx, Kx, Kx, wzxf, Cz, azf, 0, Cz, False)  # x part, then bias, then h part
        _bias_rows(az, bzr, N, Cz)
        acc_rows(N, Cz, hzf, t * N * Kr, Kr, Kr, wzf, Cz, azf, 0, Cz, True)
        acc_rows(N, Ci, xif, t * N * Kx, Kx, Kx, wixf, Ci, aif, 0, Ci, False)
        _bias_rows(ai, bin_, N, Ci)
        for b in range(N):  # element loops: `ah[b] = bhn` compiles Numba's shape-mismatch message (~1.5 s cold)
            for j in range(Ch):
                ah[b, j] = bhn[j]
        acc_rows(N, Ch, hhf, t * N * Kr, Kr, Kr, whf, Ch, ahf, 0, Ch, True)
        for b in range(N):
            amax_acc[0] = max(amax_acc[0], _out_codes(az[b], kk[0], lo, hi, off, 2 * H, ci2, m2, track, fl))
            amax_acc[1] = max(amax_acc[1], _out_codes(ah[b], kk[1], lo, hi, off, H, ch, mh, track, fl))
            amax_acc[2] = max(amax_acc[2], _out_codes(ai[b], kk[2], lo, hi, off, H, cn, mi, track, fl))
            lookup2(ci2, 2 * H, lut_sig, dsig, m2, zr, d2)
            _n_pre(cn, ch, zr[H:], off, lo, hi, H, cs, ms)
            lookup2(cs, H, lut_tanh, dtanh, ms, nq, dn)
            _factors(zr, nq, F[t - 1, b, HQ] if t > 0 else h0[b], d2, dn, ch, mh, mi,
                     (off, f4(ones), kfz, kfr, kfh, f4(cin)), H, F[t, b], y[b, t])
            if t + 1 < T:
                _h_codes(F[t, b, HQ], H, sx_zr, sx_hn, pn, stacked, hz[t + 1, b], hh[t + 1, b])
    return F


@jit
def _back_row(dh, dy, Fr, Gr, gs, H):
    """One batch row of a backward step: dh (H,) in: dL/dh' from the later steps, out: the direct path
    g·FD; dy (H,) dL/dh' from the output; Fr (NF, H) the saved factors; Gr (4H,) out, also added into the
    column sums gs (4H,) (the bias gradients, summed here while the row is in registers)."""
    for j in range(H):
        g = dh[j] + dy[j]
        gz, gr, gh, gi = g * Fr[FZ, j], g * Fr[FR, j], g * Fr[FH, j], g * Fr[FI, j]
        Gr[j], Gr[H + j], Gr[2 * H + j], Gr[3 * H + j] = gz, gr, gh, gi
        gs[j] += gz
        gs[H + j] += gr
        gs[2 * H + j] += gh
        gs[3 * H + j] += gi
        dh[j] = g * Fr[FD, j]


@jit
def _through_codes(hp, a1, a2, sx_zr, sx_hn, pn, stacked, H, dh):
    """dh += the gradient through the h input codes of both arrays: hp (H,) the h codes (h = hp/128),
    a1, a2 the products dL/d(codes) of the zr and hn arrays ([pos | neg] when stacked). d code/dh = ±sx
    inside the clip; PN: the pos code for h > 0, the neg one for h < 0 (relu'(0) = 0), whose row is -Wn
    (= Wp unless stacked)."""
    f4 = np.float32
    z0, c255 = f4(0.0), f4(255.0)
    fz, fh = f4(sx_zr), f4(sx_hn)
    qz, qh = f4(sx_zr / 128.0), f4(sx_hn / 128.0)
    if pn and stacked:
        for k in range(H):
            uz, uh = hp[k] * qz, hp[k] * qh
            dh[k] += (fz * a1[k] if (uz > z0) & (uz <= c255) else z0) - (fz * a1[H + k] if (uz < z0) & (uz >= -c255) else z0) \
                + (fh * a2[k] if (uh > z0) & (uh <= c255) else z0) - (fh * a2[H + k] if (uh < z0) & (uh >= -c255) else z0)
    elif pn:
        for k in range(H):
            uz, uh = hp[k] * qz, hp[k] * qh
            dh[k] += (fz * a1[k] if (uz != z0) & (abs(uz) <= c255) else z0) \
                + (fh * a2[k] if (uh != z0) & (abs(uh) <= c255) else z0)
    else:
        for k in range(H):
            uz, uh = hp[k] * qz, hp[k] * qh
            dh[k] += (fz * a1[k] if (uz >= z0) & (uz <= c255) else z0) + (fh * a2[k] if (uh >= z0) & (uh <= c255) else z0)


@jit
def _x_grad(d, mask, sx, stacked, half, n, first, dx):
    """dx (+)= dL/dx through one array's x input codes: d the row of dL/d(codes) ([pos | neg] blocks at 0
    and `half` when stacked); mask the `quantize_input` factors: stacked: +1 the pos code (d code/dx = sx),
    -1 the neg code (-sx), 0 clipped; else any nonzero passes sx (signed codes pos - neg)."""
    f4 = np.float32
    s = f4(sx)
    z0 = f4(0.0)
    for i in range(n):
        m = mask[i]
        if stacked:
            v = d[i] * s if m > 0 else (d[half + i] * -s if m < 0 else z0)
        else:
            v = d[i] * s if m != 0 else z0
        dx[i] = v if first else dx[i] + v


@kernel(raw=True)
def gru_q_backward(dhs, h0, F, wzrT, whnT, wzxT, wixT, mz, mi, params, G, gs, dx, dh0):
    """Straight-through backward through time of `gru_q_forward` (all gradients in real units, float32),
    time-major like it.

    dhs (N, T, H) dL/dh_t (real h = code/128), batch-major like the layer's output; F the forward's saved (T, N, NF, H); wzrT (2H, Ca), whnT (H, Ca)
    float32: the h rows' weights transposed ([Wpᵀ | Wnᵀ] when stacked), columns padded (Ca ≥ Kr, a multiple of
    LANES); wzxT (2H, Cx), wixT (H, Cx) the x rows' weights transposed, each block padded to Ip columns
    ([Wpᵀ | Wnᵀ] when stacked: Cx = 2Ip, else Ip); mz, mi (T, N, I) int8 the x codes' straight-through masks
    of the zr and in arrays (`quantize_input`); params (6,) float64: sx_zr, sx_hn (the h codes' scales), sxz,
    sxi (the x codes' scales of the zr and in arrays), pn, stacked (as numbers).
    Outputs: G (T, N, ldg) with ldg ≥ 4H: [dL/d acc_zr (2H) | dL/d acc_hn (H) | dL/d acc_in (H)] (columns
    past 4H untouched), gs (4H,) float32 G's column sums over all steps and rows (the bias gradients; a
    separate BLAS pass over G cost 0.6-0.8 ms), dx (T, N, I) float32 (time-major: batch-major
    rows, 32 pages apart per step, made the backward 5-9% slower than one transpose afterwards), dh0 (N, H).
    """
    sx_zr, sx_hn, sxz, sxi = params[0], params[1], params[2], params[3]
    pn, stacked = params[4] != 0, params[5] != 0
    N, T, H = dhs.shape
    I = dx.shape[2]
    Ca, Cx = wzrT.shape[1], wzxT.shape[1]
    half = Cx // 2
    dh = np.zeros((N, H), np.float32)
    gs[:] = 0
    a1, a2 = np.empty((N, Ca), np.float32), np.empty((N, Ca), np.float32)
    e1, e2 = np.empty((N, Cx), np.float32), np.empty((N, Cx), np.float32)
    gf, wz, wh = G.reshape(G.size), wzrT.reshape(wzrT.size), whnT.reshape(whnT.size)
    wzx, wix = wzxT.reshape(wzxT.size), wixT.reshape(wixT.size)
    a1f, a2f, e1f, e2f = a1.reshape(a1.size), a2.reshape(a2.size), e1.reshape(e1.size), e2.reshape(e2.size)
    H4 = G.shape[2]
    for t in range(T - 1, -1, -1):
        for b in range(N):
            _back_row(dh[b], dhs[b, t], F[t, b], G[t, b], gs, H)
        g0 = t * N * H4
        acc_rows(N, Ca, gf, g0, H4, 2 * H, wz, Ca, a1f, 0, Ca, False)  # a1 = dL/d acc_zr @ W_zr,hᵀ
        acc_rows(N, Ca, gf, g0 + 2 * H, H4, H, wh, Ca, a2f, 0, Ca, False)
        acc_rows(N, Cx, gf, g0, H4, 2 * H, wzx, Cx, e1f, 0, Cx, False)  # dL/d(x codes) of the zr array
        acc_rows(N, Cx, gf, g0 + 3 * H, H4, H, wix, Cx, e2f, 0, Cx, False)  # and of the in array
        for b in range(N):
            _through_codes(F[t - 1, b, HQ] if t > 0 else h0[b], a1[b], a2[b], sx_zr, sx_hn, pn, stacked, H, dh[b])
            _x_grad(e1[b], mz[t, b], sxz, stacked, half, I, True, dx[t, b])
            _x_grad(e2[b], mi[t, b], sxi, stacked, half, I, False, dx[t, b])
    for b in range(N):
        for j in range(H):
            dh0[b, j] = dh[b, j]
    return dh0
