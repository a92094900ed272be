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


def arrays(weight_ih, weight_hh, bias_ih, bias_hh, scales):
    """The three arrays of docs/gru.md from torch's parameters (gates r, z, n): weights {"zr": [[W_iz, W_hz],
    [W_ir, W_hr]] (outputs z then r), "in": W_in, "hn": W_hn}, biases {"zr": [b_iz + b_hz, b_ir + b_hr], "in":
    b_in, "hn": b_hn} (float32 sums) and output scales {"zr": sy_zr, "in" and "hn": sy_n}."""
    H = weight_hh.shape[1]
    r_, z_, n_ = slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)
    zeros = np.zeros(3 * H, f32)
    bih = bias_ih if bias_ih is not None else zeros
    bhh = bias_hh if bias_hh is not None else zeros
    W = {"zr": np.block([[weight_ih[z_], weight_hh[z_]], [weight_ih[r_], weight_hh[r_]]]),
         "in": weight_ih[n_], "hn": weight_hh[n_]}
    b = {"zr": np.concatenate([bih[z_] + bhh[z_], bih[r_] + bhh[r_]]).astype(f32), "in": bih[n_], "hn": bhh[n_]}
    return W, b, {"zr": scales["y_zr"], "in": scales["y_n"], "hn": scales["y_n"]}


def gru_integer(weight_ih, weight_hh, bias_ih, bias_hh, x, h0, scales, pn, yb, ones, n_rows):
    """The quantized GRU over x (N, T, I) float32 from h0 (N, H) float32; returns h_q (N, T, H) int64 (Q7).

    weight_ih (3H, I), weight_hh (3H, H), bias_ih, bias_hh (3H,) or None: torch's layout, gates r, z, n.
    scales: {"x_zr", "weight_zr", "y_zr", "x_in", "weight_in", "x_hn", "weight_hn", "y_n"} (powers of two).
    """
    H = weight_hh.shape[1]
    W, b, sy = arrays(weight_ih, weight_hh, bias_ih, bias_hh, scales)
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


def _code_mask(v, sx, pn):
    """d(code)/dv / sx of `input_codes` (straight through): PN: 1 where v > 0 or v < 0 inside the clip (relu'(0)
    = 0); FALSE: 1 where v·sx lies in [0, 255]."""
    u = v.astype(np.float64) * sx
    if pn:
        return (((u > 0) & (u <= 255)) | ((u < 0) & (u >= -255))).astype(np.float64)
    return ((u >= 0) & (u <= 255)).astype(np.float64)


def gru_integer_grads(weight_ih, weight_hh, bias_ih, bias_hh, x, h0, dy, scales, pn, yb, ones, n_rows):
    """Straight-through backward through time of `gru_integer` (docs/gru.md, chip.md §7), in float64: every R
    and ⌊⌋ the identity, every clip a 0/1 mask, the LUTs differentiated as the smooth σ and tanh at the LUT
    points (σ' = s(1 - s) and tanh' = 1 - t² of the float32 values the tables were made from; tanh' is 0
    where the table itself clipped 128·t). dy (N, T, H): dL/dh_t in real units (h = code/128).
    Returns {"x": (N, T, I), "h0": (N, H), "weight_ih", "weight_hh", "bias_ih", "bias_hh"}."""
    H, I = weight_hh.shape[1], weight_ih.shape[1]
    r_, z_, n_ = slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)
    W, b, sy = arrays(weight_ih, weight_hh, bias_ih, bias_hh, scales)
    sx = {a: scales["x_" + a] for a in W}
    sw = {a: scales["weight_" + a] for a in W}
    k = {a: sy[a] / (sx[a] * sw[a]) for a in W}
    Wq = {a: weight_codes(W[a], sw[a]).astype(np.float64) for a in W}
    mW = {a: ((W[a] * f32(sw[a]) >= -128) & (W[a] * f32(sw[a]) <= 127)).astype(np.float64) for a in W}
    pre = {a: b[a].astype(np.float64) * sx[a] * sw[a] / 128.0 for a in W}
    Bq = {a: np.rint(np.clip(pre[a], -128 * n_rows, 127 * n_rows)) for a in W}
    mB = {a: ((pre[a] >= -128 * n_rows) & (pre[a] <= 127 * n_rows)).astype(np.float64) for a in W}
    lo, hi = y_range(yb)
    c = np.arange(lo, hi + 1).astype(f32)
    with np.errstate(over="ignore"):
        s = (f32(1) / (f32(1) + np.exp(-(c / f32(sy["zr"]))))).astype(f32)
    t = np.tanh(c / f32(sy["in"])).astype(f32)
    ls = np.clip(np.rint(s * f32(ones)), 0, ones)
    lt = np.clip(np.rint(t * f32(128)), -128, 127)
    dsig = (s * (f32(1) - s)).astype(np.float64)
    dtanh = np.where((t * f32(128) >= -128) & (t * f32(128) <= 127), 1.0 - t.astype(np.float64) ** 2, 0.0)

    def out(a, codes):  # y = R(clip(acc·k)) and the clip mask, from the codes (pos - neg)
        v = (codes @ Wq[a].T + 128.0 * Bq[a]) * k[a]
        return np.clip(np.rint(v), lo, hi), ((v >= lo) & (v <= hi)).astype(np.float64)

    def codes(v, a):
        p, n = input_codes(v, sx[a], pn)
        return p - n

    N, T, _ = x.shape
    hq = np.clip(np.rint(h0.astype(np.float64) * 128), -128, 127)
    steps = []
    for ti in range(T):  # the forward of `gru_integer`, keeping what the backward needs
        xt, hf = x[:, ti], hq / 128.0
        cz = np.concatenate([codes(xt, "zr"), codes(hf, "zr")], 1)
        yzr, mzr = out("zr", cz)
        zq, rq = ls[(yzr[:, :H] - lo).astype(int)], ls[(yzr[:, H:] - lo).astype(int)]
        ci, chn = codes(xt, "in"), codes(hf, "hn")
        yin, min_ = out("in", ci)
        yhn, mhn = out("hn", chn)
        npre = yin + np.floor(rq * yhn / 128)
        nidx = (np.clip(npre, lo, hi) - lo).astype(int)
        nq = lt[nidx]
        mn = ((npre >= lo) & (npre <= hi)).astype(np.float64)
        steps.append(dict(xt=xt, hq=hq, hf=hf, cz=cz, ci=ci, chn=chn, yzr=yzr, mzr=mzr, zq=zq, rq=rq, yhn=yhn,
                          mhn=mhn, min=min_, nq=nq, mn=mn, nidx=nidx))
        hq = np.clip(np.floor(((ones - zq) * nq + zq * hq) / 128), -128, 127)
    dWq = {a: np.zeros_like(Wq[a]) for a in W}
    dBq = {a: np.zeros(Wq[a].shape[0]) for a in W}
    dx = np.zeros(x.shape)
    carry = np.zeros((N, H))                                        # dL/dh_q of the later steps
    for ti in range(T - 1, -1, -1):
        st = steps[ti]
        G = dy[:, ti].astype(np.float64) / 128.0 + carry             # dL/dh'_q (h' = h'_q/128)
        zq, rq, nq = st["zq"], st["rq"], st["nq"]
        g_nq = G * (ones - zq) / 128.0
        g_zq = G * (st["hq"] - nq) / 128.0
        g_npre = g_nq * 128.0 * dtanh[st["nidx"]] / sy["in"] * st["mn"]   # n_q ≈ 128·tanh(n_pre/sy_n)
        g_rq = g_npre * st["yhn"] / 128.0
        g_yhn = g_npre * rq / 128.0
        g_yin = g_npre
        yzi = (np.clip(st["yzr"], lo, hi) - lo).astype(int)
        g_yzr = np.concatenate([g_zq, g_rq], 1) * ones * dsig[yzi] / sy["zr"]  # z_q ≈ ones·σ(y/sy_zr)
        g_acc = {"zr": g_yzr * k["zr"] * st["mzr"], "in": g_yin * k["in"] * st["min"],
                 "hn": g_yhn * k["hn"] * st["mhn"]}
        ins = {"zr": st["cz"], "in": st["ci"], "hn": st["chn"]}
        for a in W:
            dWq[a] += g_acc[a].T @ ins[a]
            dBq[a] += 128.0 * g_acc[a].sum(0)
        g_cz, g_ci, g_chn = g_acc["zr"] @ Wq["zr"], g_acc["in"] @ Wq["in"], g_acc["hn"] @ Wq["hn"]
        dx[:, ti] = (g_cz[:, :I] * sx["zr"] * _code_mask(st["xt"], sx["zr"], pn)
                     + g_ci * sx["in"] * _code_mask(st["xt"], sx["in"], pn))
        dh_real = (g_cz[:, I:] * sx["zr"] * _code_mask(st["hf"], sx["zr"], pn)
                   + g_chn * sx["hn"] * _code_mask(st["hf"], sx["hn"], pn))
        carry = G * zq / 128.0 + dh_real / 128.0                     # h = h_q/128
    dW = {a: dWq[a] * sw[a] * mW[a] for a in W}
    db = {a: dBq[a] * mB[a] * sx[a] * sw[a] / 128.0 for a in W}
    gih, ghh = np.zeros((3 * H, I)), np.zeros((3 * H, H))
    gih[z_], ghh[z_] = dW["zr"][:H, :I], dW["zr"][:H, I:]
    gih[r_], ghh[r_] = dW["zr"][H:, :I], dW["zr"][H:, I:]
    gih[n_], ghh[n_] = dW["in"], dW["hn"]
    gbi, gbh = np.zeros(3 * H), np.zeros(3 * H)
    gbi[z_] = gbh[z_] = db["zr"][:H]
    gbi[r_] = gbh[r_] = db["zr"][H:]
    gbi[n_], gbh[n_] = db["in"], db["hn"]
    h0_mask = ((h0.astype(np.float64) * 128 >= -128) & (h0.astype(np.float64) * 128 <= 127))  # h_q = clip(R(h0·128))
    return {"x": dx, "h0": carry * 128.0 * h0_mask, "weight_ih": gih, "weight_hh": ghh, "bias_ih": gbi, "bias_hh": gbh}
