"""The integer engine's arithmetic: power-of-two requantization by shifts and the quantized GRU cell in
integers only (docs/gru.md). Plain NumPy on int64, no floating point."""
import numpy as np

from ..quant import code_range

__all__ = ["shift_round", "requant_shift", "gru_q_int"]


def shift_round(v, k):
    """R(v·2^k) on int64: left shift, or right shift rounding half to even."""
    v = np.asarray(v, np.int64)
    if k >= 0:
        return v << k
    q = v >> -k
    r = v - (q << -k)
    half = np.int64(1) << (-k - 1)
    return q + ((r > half) | ((r == half) & ((q & 1) == 1)))


def requant_shift(v, k, floor: bool = False):
    """An array's requantization v·2^k (the division by G when k < 0): R (shift_round) or, with floor (the
    mapper from 0.8.8 on, LayerConfig.rounding "floor"), ⌊v·2^k⌋, an arithmetic right shift."""
    if not floor:
        return shift_round(v, k)
    v = np.asarray(v, np.int64)
    return v << k if k >= 0 else v >> -k


def gru_q_int(xz, xi, h0q, wzr, win, whn, bzr, bin_, bhn, e_zr, e_in, e_hn, k_zr, k_hn, yb, pn, ones, lut_sig,
              lut_tanh, amax=None, floor=False):
    """The quantized GRU cell with integers only (docs/gru.md), step by step: the integer reference.

    xz, xi: (pos, neg) int64 input codes of x for the zr and in arrays, (N, T, I) each (neg zeros for FALSE);
    h0q (N, H) Q7 codes; w* int8 weight codes (O, K) (zr: K = I + H); b* int64 bias terms (128·Bq);
    e_*: log2(sy) - log2(sx) - log2(sw) of each array; k_zr, k_hn: log2(sx) - 7 of the h input codes.
    Returns hq (N, T, H) int64. amax: a dict that, when given, receives max |accumulator| of each array
    over the sequence ("zr", "in", "hn"; the auto-scale statistics). floor: the arrays' requantization rounds
    down (LayerConfig.rounding "floor").
    """
    N, T, I = xz[0].shape
    H = h0q.shape[1]
    lo, hi = code_range(yb)
    off = -lo
    wzr, win, whn = (np.asarray(w, np.int64) for w in (wzr, win, whn))
    h = np.asarray(h0q, np.int64)
    out = np.empty((N, T, H), np.int64)

    def codes(hv, k):
        if pn:
            return (np.clip(shift_round(np.maximum(hv, 0), k), 0, 255),
                    np.clip(shift_round(np.maximum(-hv, 0), k), 0, 255))
        return np.clip(shift_round(hv, k), 0, 255), np.zeros_like(hv)

    seen = {"zr": 0, "in": 0, "hn": 0}

    def acc(name, a):
        seen[name] = max(seen[name], int(np.abs(a).max(initial=0)))
        return a
    y_in = np.clip(requant_shift(acc("in", (xi[0] - xi[1]) @ win.T + bin_), e_in, floor), lo, hi)
    for t in range(T):
        hp, hn = codes(h, k_zr)
        inp = np.concatenate([xz[0][:, t] - xz[1][:, t], hp - hn], axis=1)
        yzr = np.clip(requant_shift(acc("zr", inp @ wzr.T + bzr), e_zr, floor), lo, hi)
        z, r = lut_sig[yzr[:, :H] + off], lut_sig[yzr[:, H:] + off]
        hp2, hn2 = codes(h, k_hn)
        yhn = np.clip(requant_shift(acc("hn", (hp2 - hn2) @ whn.T + bhn), e_hn, floor), lo, hi)
        n = lut_tanh[np.clip(y_in[:, t] + ((r * yhn) >> 7), lo, hi) + off]
        h = np.clip(((ones - z) * n + z * h) >> 7, -128, 127)
        out[:, t] = h
    if amax is not None:
        amax.update(seen)
    return out
