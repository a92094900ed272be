"""An independent, formula-by-formula NumPy transcription of chip.md §2, §3, §6, §7 for one Linear forward.

Written without the kernels, the exact-GEMM blocking or the signed-PN shortcut: always the concatenated
[Wqᵀ; -Wqᵀ] layout, int64 accumulators, and gradients derived by hand from the same formulas. The layer
must equal it bit for bit on y and to float32 order on the gradients.
"""
import numpy as np

f32 = np.float32


def R(v):
    return np.rint(v)


def spec_linear(x, W, b, *, sx, sw, sy, xb=8, yb=8, N=8, neg="FALSE", shift_num=1.0, bias_d=0.0, w_clip=None,
                level=0, E1=None, E2=None, gy=None):
    """Returns y, and (dx, dW, db) when gy is given. x (B, K), W (O, K), b (O,) or None; float32."""
    B, K = x.shape
    O = W.shape[0]
    P = f32(sx * sw)
    G = int(np.rint(sx * sw / sy))
    lo_y, hi_y = -2 ** (yb - 1), 2 ** (yb - 1) - 1
    # weights (clip before round: the gradient mask is the clip's)
    Wc = np.clip(W, -w_clip, w_clip) if w_clip is not None else W
    wpre = (Wc * f32(sw)).astype(f32)
    Wq = R(np.clip(wpre, -128, 127))
    dWq_dW = ((wpre >= -128) & (wpre <= 127)) * (np.abs(W) <= (w_clip if w_clip is not None else np.inf)) * f32(sw)
    # inputs, always as a list of branches [(codes, d code / d x)]
    hi_x = 2 ** xb - 1
    s = 0.0
    if neg == "Shift":
        s = float(R(f32(min(shift_num * sx, 2.0 ** xb))))
    if neg == "PN":
        branches = []
        for sign in (1, -1):
            xr = np.maximum(sign * x, 0).astype(f32)
            pre = (xr * f32(sx)).astype(f32)
            branches.append((R(np.clip(pre, 0, hi_x)), sign * (sign * x > 0) * (pre <= hi_x) * f32(sx)))
        Wm = np.concatenate([Wq.T, -Wq.T])
        signs = [1, -1]
    else:
        pre = (x * f32(sx) + f32(s)).astype(f32)
        branches = [(R(np.clip(pre, 0, hi_x)), ((pre >= 0) & (pre <= hi_x)) * f32(sx))]
        Wm = Wq.T
        signs = [1]
    Xq = np.concatenate([c for c, _ in branches], axis=1)
    dXq_dx = [d for _, d in branches]
    split = xb > 8
    Xd = np.floor(Xq / 256)
    Xl = Xq - 256 * Xd if split else Xq
    # bias (units of 128)
    t = (b * P).astype(f32) if b is not None else np.zeros(O, f32)
    corr = f32(s) * Wq.sum(1) if s else np.zeros(O, f32)
    bd = np.broadcast_to(np.asarray(bias_d, f32), (O,))
    Bd = R((bd * P).astype(f32) / 128) if split else np.zeros(O, f32)
    bpre = ((R(t / 128) * 128 - 128 * Bd - corr) if split else (t - corr)).astype(f32) / f32(128)
    Ba = R(np.clip(bpre, -128 * N, 127 * N))
    bmask = (bpre >= -128 * N) & (bpre <= 127 * N)
    # analog accumulator
    if level:
        a, bb = f32(0.015605 * level), f32(0.3145 * level)
        Wn = Wm + (a * np.abs(Wm) + bb) * E1
        r = np.broadcast_to((Ba / f32(N)).astype(f32), (N, O))
        nb = f32(128) * (r + (a * np.abs(r) + bb) * E2).sum(0, dtype=f32)
        acc = Xl.astype(f32) @ Wn.astype(f32) + nb  # float32, as the vendor (noisy sums are not integers)
        v = acc.astype(f32) / f32(G)
        dv_dacc = 1 / G
        dWn_dWm = 1 + a * np.sign(Wm) * E1
        dnb_dBa = f32(128) * (1 + a * np.sign(r) * E2).sum(0) / N
        Weff = Wn
    else:
        acc = Xl.astype(np.int64) @ Wm.astype(np.int64) + 128 * Ba.astype(np.int64)
        v = (acc.astype(f32) / P) * f32(sy)
        dv_dacc = sy / P
        dWn_dWm = np.ones_like(Wm)
        dnb_dBa = np.full(O, 128.0)
        Weff = Wm
    ya = R(np.clip(v, lo_y, hi_y))
    amask = (v >= lo_y) & (v <= hi_y)
    if split:
        accd = (256 * Xd.astype(np.int64)) @ Wm.astype(np.int64) + 128 * Bd.astype(np.int64)
        yd = R(accd.astype(f32) / f32(G))
        tot = ya + yd
        y = np.clip(tot, lo_y, hi_y) / f32(sy)
        omask = (tot >= lo_y) & (tot <= hi_y)
    else:
        y = ya / f32(sy)
        omask = np.ones_like(amask)
    y = y.astype(f32)
    if gy is None:
        return y
    # backward: straight-through R and ⌊⌋, clamps as masks
    g_tot = gy * omask / sy  # dL/d(ya + yd) (split) or dL/dya
    g_acc = g_tot * amask * dv_dacc  # analog accumulator
    dWm = Xl.T @ g_acc * dWn_dWm
    gBa = g_acc.sum(0) * dnb_dBa * bmask
    if split:
        g_accd = g_tot / G
        dWm = dWm + (256 * Xd).T @ g_accd
        dXq = g_accd @ Wm.T  # dXd/dXq = 1/256 cancels the 256; dXl/dXq = 0
    else:
        dXq = g_acc @ Weff.T
    dWq = sum(sg * dWm[i * K:(i + 1) * K].T for i, sg in enumerate(signs))
    dWq = dWq - (gBa * s / 128)[:, None]
    dx = sum(dXq[:, i * K:(i + 1) * K] * d for i, d in enumerate(dXq_dx))
    db = gBa * P / 128 if b is not None else None
    return y, dx, dWq * dWq_dW, db
