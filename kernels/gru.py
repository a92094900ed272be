"""GRU recurrences over whole sequences (float mode): no Python loop per time step.

torch's GRUCell, gate order r, z, n: with gi = W_ih x + b_ih (precomputed for every step by one GEMM) and
gh = W_hh h + b_hh,
    r = σ(gi_r + gh_r),  z = σ(gi_z + gh_z),  n = tanh(gi_n + r ⊙ gh_n),  h' = (1 - z) ⊙ n + z ⊙ h.
Each step's recurrent product runs over the whole batch with the weight row outermost, so a row of W is
loaded once per step and reused by every batch row (the products are a small GEMM, not N matrix-vector
products); the inner loops are contiguous and vectorize. Steps are sequential, so there is no prange.
Weight gradients are left to the caller as large matrix products over the saved per-step gate gradients.
"""
import math

import numpy as np

from ._jit import kernel

__all__ = ["gru_forward", "gru_backward"]


@kernel
def gru_forward(gi, whhT, bhh, h0, hs, r, z, n, ghn):
    """gi (N, T, 3H) float32 (W_ih x + b_ih), whhT (H, 3H) = W_hhᵀ, bhh (3H,), h0 (N, H).

    Outputs (preallocated): hs (N, T, H) hidden states, r, z, n (N, T, H) gates, ghn (N, T, H) = (W_hh h + b_hh)_n.
    """
    N, T, H3 = gi.shape
    H = H3 // 3
    h = h0.copy()
    gh = np.empty((N, H3), np.float32)
    one = np.float32(1.0)
    for t in range(T):
        for b in range(N):
            for j in range(H3):
                gh[b, j] = bhh[j]
        for k in range(H):  # gh += h @ W_hhᵀ: row k of W_hhᵀ reused by every batch row
            for b in range(N):
                hk = h[b, k]
                for j in range(H3):
                    gh[b, j] += hk * whhT[k, j]
        for b in range(N):
            for j in range(H):
                rr = one / (one + np.float32(math.exp(-(gi[b, t, j] + gh[b, j]))))
                zz = one / (one + np.float32(math.exp(-(gi[b, t, H + j] + gh[b, H + j]))))
                nn = np.float32(math.tanh(gi[b, t, 2 * H + j] + rr * gh[b, 2 * H + j]))
                r[b, t, j] = rr
                z[b, t, j] = zz
                n[b, t, j] = nn
                ghn[b, t, j] = gh[b, 2 * H + j]
                hs[b, t, j] = (one - zz) * nn + zz * h[b, j]
            for j in range(H):
                h[b, j] = hs[b, t, j]
    return hs


@kernel
def gru_backward(dhs, dhT, whh, h0, hs, r, z, n, ghn, dgi, dgh, dh0):
    """Backward through time of `gru_forward`.

    dhs (N, T, H) dL/dh_t from the outputs, dhT (N, H) dL/dh_T from the last state, whh (3H, H) = W_hh.
    Outputs: dgi (N, T, 3H) = dL/dgi (gate pre-activations of the input projection), dgh (N, T, 3H) = dL/dgh
    (of W_hh h + b_hh), dh0 (N, H).
    """
    N, T, H = dhs.shape
    one = np.float32(1.0)
    dh = dhT.copy()
    for t in range(T - 1, -1, -1):
        for b in range(N):
            for j in range(H):
                g = dh[b, j] + dhs[b, t, j]
                hp = hs[b, t - 1, j] if t > 0 else h0[b, j]
                rr, zz, nn = r[b, t, j], z[b, t, j], n[b, t, j]
                dnp = g * (one - zz) * (one - nn * nn)
                drp = dnp * ghn[b, t, j] * rr * (one - rr)
                dzp = g * (hp - nn) * zz * (one - zz)
                dgi[b, t, j] = drp
                dgi[b, t, H + j] = dzp
                dgi[b, t, 2 * H + j] = dnp
                dgh[b, t, j] = drp
                dgh[b, t, H + j] = dzp
                dgh[b, t, 2 * H + j] = dnp * rr
                dh[b, j] = g * zz
        for j in range(3 * H):  # dh += dgh @ W_hh: row j of W_hh reused by every batch row
            for b in range(N):
                gj = dgh[b, t, j]
                for k in range(H):
                    dh[b, k] += gj * whh[j, k]
    for b in range(N):
        for j in range(H):
            dh0[b, j] = dh[b, j]
    return dh0
