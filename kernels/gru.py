"""GRU recurrences over whole sequences (float mode): no Python loop per time step.

torch's GRUCell, gate order r, z, n: with gi = W_ih x + b_ih (precomputed for every step by one GEMM) and
gh = W_hh h + b_hh,
    r = σ(gi_r + gh_r),  z = σ(gi_z + gh_z),  n = tanh(gi_n + r ⊙ gh_n),  h' = (1 - z) ⊙ n + z ⊙ h.
The kernels run the recurrence for all T steps; each batch row is independent, so ``prange`` over rows is
race-free. Weight gradients are left to the caller as large matrix products over the saved per-step
gate gradients (dgi, dgh).
"""
import math

import numpy as np
from numba import prange

from ._jit import kernel

__all__ = ["gru_forward", "gru_backward"]


@kernel
def gru_forward(gi, whhT, bhh, h0, hs, r, z, n, ghn):
    """gi (N, T, 3H) float32 (W_ih x + b_ih), whhT (H, 3H) = W_hhᵀ, bhh (3H,), h0 (N, H).

    Outputs (preallocated): hs (N, T, H) hidden states, r, z, n (N, T, H) gates, ghn (N, T, H) = (W_hh h + b_hh)_n.
    """
    N, T, H3 = gi.shape
    H = H3 // 3
    for b in prange(N):
        h = h0[b].copy()
        gh = np.empty(H3, np.float32)
        for t in range(T):
            for j in range(H3):
                gh[j] = bhh[j]
            for k in range(H):  # gh += h @ W_hhᵀ, the inner loop contiguous
                hk = h[k]
                for j in range(H3):
                    gh[j] += hk * whhT[k, j]
            for j in range(H):
                rr = np.float32(1.0) / (np.float32(1.0) + np.float32(math.exp(-(gi[b, t, j] + gh[j]))))
                zz = np.float32(1.0) / (np.float32(1.0) + np.float32(math.exp(-(gi[b, t, H + j] + gh[H + j]))))
                nn = np.float32(math.tanh(gi[b, t, 2 * H + j] + rr * gh[2 * H + j]))
                r[b, t, j] = rr
                z[b, t, j] = zz
                n[b, t, j] = nn
                ghn[b, t, j] = gh[2 * H + j]
                hs[b, t, j] = (np.float32(1.0) - zz) * nn + zz * h[j]
            for j in range(H):
                h[j] = hs[b, t, j]
    return hs


@kernel
def gru_backward(dhs, dhT, whh, h0, hs, r, z, n, ghn, dgi, dgh, dh0):
    """Backward through time of `gru_forward`.

    dhs (N, T, H) dL/dh_t from the outputs, dhT (N, H) dL/dh_T from the last state, whh (3H, H) = W_hh.
    Outputs: dgi (N, T, 3H) = dL/dgi (gate pre-activations of the input projection), dgh (N, T, 3H) = dL/dgh
    (of W_hh h + b_hh), dh0 (N, H).
    """
    N, T, H = dhs.shape
    for b in prange(N):
        dh = dhT[b].copy()
        g = np.empty(H, np.float32)
        for t in range(T - 1, -1, -1):
            for j in range(H):
                g[j] = dh[j] + dhs[b, t, j]
            for j in range(H):
                hp = hs[b, t - 1, j] if t > 0 else h0[b, j]
                rr, zz, nn = r[b, t, j], z[b, t, j], n[b, t, j]
                dn = g[j] * (np.float32(1.0) - zz)
                dz = g[j] * (hp - nn)
                dnp = dn * (np.float32(1.0) - nn * nn)
                drp = dnp * ghn[b, t, j] * rr * (np.float32(1.0) - rr)
                dzp = dz * zz * (np.float32(1.0) - zz)
                dgi[b, t, j] = drp
                dgi[b, t, H + j] = dzp
                dgi[b, t, 2 * H + j] = dnp
                dgh[b, t, j] = drp
                dgh[b, t, H + j] = dzp
                dgh[b, t, 2 * H + j] = dnp * rr
                dh[j] = g[j] * zz
            for j in range(3 * H):  # dh += dgh @ W_hh, the inner loop contiguous
                gj = dgh[b, t, j]
                for k in range(H):
                    dh[k] += gj * whh[j, k]
        for j in range(H):
            dh0[b, j] = dh[j]
    return dh0
