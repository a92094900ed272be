"""GRU forward + backward through time: witnp float and quantized (the three-array form) against torch
nn.GRU (float), each side in its own process.

usage: python bench/bench_gru.py [--threads 1,2] [--repeat 5] [--rounds 3]
Workload: batch 32, input 64, hidden 128, 100 steps (batch first). Medians in ms, 1 thread first.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import bench_main, median_ms  # noqa: E402

B, I, H, T = 32, 64, 128, 100
NAME = f"B{B} I{I} H{H} T{T}"


def witnp_worker(repeat):
    import numpy as np

    import witnp as wn
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, T, I)).astype(np.float32)
    gy = rng.normal(size=(B, T, H)).astype(np.float32)
    res = {}
    for mode in ("float", "quantized"):
        cfg = wn.LayerConfig() if mode == "float" else wn.LayerConfig(
            use_quantization=True, handle_neg_in="PN", use_auto_scale=False, scale_x=64, scale_weight=128,
            scale_y=32)
        g = wn.GRU(I, H, config=cfg)

        def step():
            y, ctx = g.forward(x, train=True)
            g.backward(gy, ctx)
        res[f"{mode} {NAME}"] = median_ms(step, repeat, warmup=1, min_time=1.0)
    return res


def torch_worker(repeat):
    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, I, generator=g)
    gy = torch.randn(B, T, H, generator=g)
    gru = torch.nn.GRU(I, H, batch_first=True)

    def step():
        gru.zero_grad(set_to_none=False)
        y, _ = gru(x.detach().requires_grad_(True))
        y.backward(gy)
    return {f"float {NAME}": median_ms(step, repeat, warmup=1, min_time=1.0)}


def report(t, w, tr):
    tf = tr.get(f"float {NAME}")
    print(f"{'workload':40s} {'witnp':>9s} {'torch float':>12s} {'ratio':>7s}")
    for mode in ("float", "quantized"):
        k = f"{mode} {NAME}"
        print(f"{k:40s} {w[k]:9.2f} " + (f"{tf:12.2f} {w[k] / tf:7.2f}" if tf else f"{'-':>12s} {'-':>7s}"))


if __name__ == "__main__":
    bench_main(__file__, witnp_worker, torch_worker, report, repeat=5)
