"""GRU recurrences over whole sequences (float mode): no Python loop per time step.

torch's GRUCell, gate order r, z, n: with gi = W_ih x + b_ih (precomputed for every step by one GEMM) and
gh = W_hh h + b_hh,
    r = σ(gi_r + gh_r),  z = σ(gi_z + gh_z),  n = tanh(gi_n + r ⊙ gh_n),  h' = (1 - z) ⊙ n + z ⊙ h.
Time-major like the quantized recurrence (`quant_step`): each step's rows are one contiguous block. Each step's
recurrent product (batch rows x H x 3H) runs on the register tile of `tile`, into a scratch row block;
the gates run per batch row. Weight gradients are left to the caller as large matrix products over the
saved per-step gate gradients.
"""
import math

import numpy as np

from .._jit import jit, kernel
from ..simd.tile import acc_rows

__all__ = ["gru_forward", "gru_backward"]


@jit
def _gates(gi, gh, hp, H, bhh, h, r, z, n, ghn):
    """One batch row: gi (3H,) input projection, gh (3H,) W_hh h (bias bhh added here), hp (H,) h -> h', r,
    z, n and the n part of W_hh h + b_hh."""
    one = np.float32(1.0)
    for j in range(H):
        rr = one / (one + np.float32(math.exp(-(gi[j] + gh[j] + bhh[j]))))
        zz = one / (one + np.float32(math.exp(-(gi[H + j] + gh[H + j] + bhh[H + j]))))
        gn = gh[2 * H + j] + bhh[2 * H + j]
        nn = np.float32(math.tanh(gi[2 * H + j] + rr * gn))
        r[j], z[j], n[j], ghn[j] = rr, zz, nn, gn
        h[j] = (one - zz) * nn + zz * hp[j]


@kernel(raw=True)
def gru_forward(gi, whhT, bhh, h0, hs, r, z, n, ghn):
    """gi (T, N, 3H) float32 (W_ih x + b_ih), whhT (H, C3) = W_hhᵀ with columns padded to C3 (a multiple of
    LANES), bhh (3H,), h0 (N, H).

    Outputs (preallocated, time-major): hs (T, N, H) hidden states, r, z, n (T, N, H) gates, ghn (T, N, H) =
    (W_hh h + b_hh)_n.
    """
    T, N, H3 = gi.shape
    H = H3 // 3
    C3 = whhT.shape[1]
    gh = np.empty((N, C3), np.float32)
    ghf, wf, hsf, h0f = gh.reshape(gh.size), whhT.reshape(whhT.size), hs.reshape(hs.size), h0.reshape(h0.size)
    for t in range(T):
        if t == 0:
            acc_rows(N, C3, h0f, 0, H, H, wf, C3, ghf, 0, C3, False)
        else:
            acc_rows(N, C3, hsf, (t - 1) * N * H, H, H, wf, C3, ghf, 0, C3, False)
        for b in range(N):
            _gates(gi[t, b], gh[b], hs[t - 1, b] if t > 0 else h0[b], H, bhh, hs[t, b], r[t, b], z[t, b], n[t, b],
                   ghn[t, b])
    return hs


@jit
def _gate_grads(dh, dy, hp, r, z, n, ghn, H, dgi, dgh):
    """One batch row of a backward step: dh (H,) in: dL/dh' from later steps, out: the direct path g·z;
    dy (H,) from the output; dgi, dgh (3H,) out."""
    one = np.float32(1.0)
    for j in range(H):
        g = dh[j] + dy[j]
        rr, zz, nn = r[j], z[j], n[j]
        dnp = g * (one - zz) * (one - nn * nn)
        drp = dnp * ghn[j] * rr * (one - rr)
        dzp = g * (hp[j] - nn) * zz * (one - zz)
        dgi[j], dgi[H + j], dgi[2 * H + j] = drp, dzp, dnp
        dgh[j], dgh[H + j], dgh[2 * H + j] = drp, dzp, dnp * rr
        dh[j] = g * zz


@kernel(raw=True)
def gru_backward(dhs, dhT, whh, h0, hs, r, z, n, ghn, dgi, dgh, dh0):
    """Backward through time of `gru_forward` (time-major).

    dhs (T, N, H) dL/dh_t from the outputs, dhT (N, H) dL/dh_T from the last state, whh (3H, Hp) = W_hh with
    columns padded to Hp (a multiple of LANES).
    Outputs: dgi (T, N, 3H) = dL/dgi (gate pre-activations of the input projection), dgh (T, N, 3H) = dL/dgh
    (of W_hh h + b_hh), dh0 (N, H).
    """
    T, N, H = dhs.shape
    Hp = whh.shape[1]
    dh = np.zeros((N, Hp), np.float32)
    for b in range(N):  # element loops, not dh[:, :H] = dhT: an array-to-slice copy compiles Numba's
        for j in range(H):  # shape-mismatch message (string formatting: ~1.5 s of a cold start)
            dh[b, j] = dhT[b, j]
    dhf, wf, dghf = dh.reshape(dh.size), whh.reshape(whh.size), dgh.reshape(dgh.size)
    for t in range(T - 1, -1, -1):
        for b in range(N):
            _gate_grads(dh[b], dhs[t, b], hs[t - 1, b] if t > 0 else h0[b], r[t, b], z[t, b], n[t, b], ghn[t, b], H,
                        dgi[t, b], dgh[t, b])
        acc_rows(N, Hp, dghf, t * N * 3 * H, 3 * H, 3 * H, wf, Hp, dhf, 0, Hp, True)  # dh += dgh[t] @ W_hh
    for b in range(N):
        for j in range(H):
            dh0[b, j] = dh[b, j]
    return dh0
