"""An independent integer reference of the quantized GRU, transcribed from docs/gru.md's formulas.

Plain NumPy; imports nothing from witnp, so a wrong constant in witnp's arrays, LUTs, shifts or gate order
cannot also be in the expected values. Power-of-two scales (which the quantized GRU requires) make every
scaling below exact in float64, so R(·) here is np.rint (half to even) on exact values.
"""
import numpy as np

f32 = np.float32


def y_range(yb):
    return -(2 ** (yb - 1)), 2 ** (yb - 1) - 1


def weight_codes(W, sw):
    """Wq = R(clip(W·sw, -128, 127)) (chip.md §2)."""
    return np.rint(np.clip(W.astype(np.float64) * sw, -128, 127)).astype(np.int64)


def bias_codes(b, sx, sw, n_rows):
    """Bq = R(clip(b·sx·sw/128, -128N, 127N)) (docs/gru.md's table; FALSE/PN have no shift term)."""
    return np.rint(np.clip(b.astype(np.float64) * sx * sw / 128.0, -128 * n_rows, 127 * n_rows)).astype(np.int64)


def input_codes(v, sx, pn):
    """PN: (R(clip(relu(v)·sx, 0, 255)), R(clip(relu(-v)·sx, 0, 255))); FALSE: (R(clip(v·sx, 0, 255)), 0)."""
    v = v.astype(np.float64) * sx
    if pn:
        return np.rint(np.clip(np.maximum(v, 0), 0, 255)), np.rint(np.clip(np.maximum(-v, 0), 0, 255))
    return np.rint(np.clip(v, 0, 255)), np.zeros_like(v)


def luts(yb, ones, sy_zr, sy_n):
    """LUT_sig[c] = clip(R(σ(c/sy_zr)·ones), 0, ones), LUT_tanh[c] = clip(R(tanh(c/sy_n)·128), -128, 127) over
    c in Y(yb), σ and tanh evaluated in float32; index c - lo."""
    lo, hi = y_range(yb)
    c = np.arange(lo, hi + 1).astype(f32)
    with np.errstate(over="ignore"):
        sig = f32(1) / (f32(1) + np.exp(-(c / f32(sy_zr))))
    tanh = np.tanh(c / f32(sy_n))
    ls = np.clip(np.rint(sig.astype(f32) * f32(ones)), 0, ones).astype(np.int64)
    lt = np.clip(np.rint(tanh.astype(f32) * f32(128)), -128, 127).astype(np.int64)
    return ls, lt


def gru_integer(weight_ih, weight_hh, bias_ih, bias_hh, x, h0, scales, pn, yb, ones, n_rows):
    """The quantized GRU over x (N, T, I) float32 from h0 (N, H) float32; returns h_q (N, T, H) int64 (Q7).

    weight_ih (3H, I), weight_hh (3H, H), bias_ih, bias_hh (3H,) or None: torch's layout, gates r, z, n.
    scales: {"x_zr", "weight_zr", "y_zr", "x_in", "weight_in", "x_hn", "weight_hn", "y_n"} (powers of two).
    """
    H = weight_hh.shape[1]
    r_, z_, n_ = slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)
    zeros = np.zeros(3 * H, f32)
    bih = bias_ih if bias_ih is not None else zeros
    bhh = bias_hh if bias_hh is not None else zeros
    # the three arrays of docs/gru.md: zr = [[W_iz, W_hz], [W_ir, W_hr]] (outputs z then r), in, hn
    W = {"zr": np.block([[weight_ih[z_], weight_hh[z_]], [weight_ih[r_], weight_hh[r_]]]),
         "in": weight_ih[n_], "hn": weight_hh[n_]}
    b = {"zr": np.concatenate([bih[z_] + bhh[z_], bih[r_] + bhh[r_]]).astype(f32), "in": bih[n_], "hn": bhh[n_]}
    sy = {"zr": scales["y_zr"], "in": scales["y_n"], "hn": scales["y_n"]}
    Wq = {a: weight_codes(W[a], scales["weight_" + a]) for a in W}
    Bq = {a: bias_codes(b[a], scales["x_" + a], scales["weight_" + a], n_rows) for a in W}
    lo, hi = y_range(yb)

    def y_of(a, pos, neg):
        acc = (pos - neg) @ Wq[a].T.astype(np.float64) + 128.0 * Bq[a]
        return np.clip(np.rint(acc * sy[a] / (scales["x_" + a] * scales["weight_" + a])), lo, hi).astype(np.int64)

    ls, lt = luts(yb, ones, scales["y_zr"], scales["y_n"])
    N, T, _ = x.shape
    h = np.clip(np.rint(h0.astype(np.float64) * 128), -128, 127).astype(np.int64)
    out = np.empty((N, T, H), np.int64)
    for t in range(T):
        xt = x[:, t]
        hf = h.astype(np.float64) / 128.0
        pz, nz = input_codes(xt, scales["x_zr"], pn)
        ph, nh = input_codes(hf, scales["x_zr"], pn)
        yzr = y_of("zr", np.concatenate([pz, ph], 1), np.concatenate([nz, nh], 1))
        z, r = ls[yzr[:, :H] - lo], ls[yzr[:, H:] - lo]
        y_in = y_of("in", *input_codes(xt, scales["x_in"], pn))
        y_hn = y_of("hn", *input_codes(hf, scales["x_hn"], pn))
        rhn = (r * y_hn) >> 7                                   # ⌊r_q·y_hn / 2^7⌋
        n = lt[np.clip(y_in + rhn, lo, hi) - lo]
        h = np.clip(((ones - z) * n + z * h) >> 7, -128, 127)  # ⌊((ones - z)·n + z·h) / 2^7⌋
        out[:, t] = h
    return out
