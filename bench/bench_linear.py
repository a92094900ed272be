"""Linear forward+backward: witnp float and QAT against torch (float, and fake-quant with straight-through
gradients), each side in its own process (torch's thread pool slows NumPy's BLAS in the same one).

usage: python bench/bench_linear.py [--threads 1,2] [--repeat 30]
Prints medians in ms (median over --rounds alternating worker runs of per-run medians), 1 thread first; ratio = witnp / torch (below 1: witnp faster). Also the machine's
fp32 sgemm rate on the B256 512->512 products, and the share of it that the QAT step reaches.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import bench_main, median_ms  # noqa: E402

WORKLOADS = [(64, 128, 128), (256, 512, 512)]
MODES = ["float", "qat_false", "qat_pn"]
SCALES = dict(sx=16.0, sw=64.0, sy=16.0)


def witnp_worker(repeat):
    import numpy as np

    import witnp as wn
    res = {}
    for B, K, O in WORKLOADS:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(B, K)).astype(np.float32)
        gy = rng.normal(size=(B, O)).astype(np.float32)
        for mode in MODES:
            cfg = wn.LayerConfig() if mode == "float" else wn.LayerConfig(
                use_quantization=True, use_auto_scale=False, scale_x=SCALES["sx"], scale_weight=SCALES["sw"],
                scale_y=SCALES["sy"], handle_neg_in="PN" if mode == "qat_pn" else "FALSE")
            lin = wn.Linear(K, O, config=cfg)

            def step():
                y, ctx = lin.forward(x, train=True)
                lin.backward(gy, ctx)
            res[f"{mode} B{B} {K}->{O}"] = median_ms(step, repeat)
        # the machine's fp32 BLAS rate on the three products of one step
        W = rng.normal(size=(O, K)).astype(np.float32)

        def gemms():
            x @ W.T
            gy @ W
            gy.T @ x
        ms = median_ms(gemms, repeat)
        res[f"sgemm B{B} {K}->{O}"] = ms
        res[f"sgemm GFLOP/s B{B} {K}->{O}"] = 3 * 2 * B * K * O / (ms * 1e-3) / 1e9
    return res


def torch_worker(repeat):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    sx, sw, sy = SCALES["sx"], SCALES["sw"], SCALES["sy"]

    def fq(v, lo, hi):  # clamp, then round with a straight-through gradient
        c = v.clamp(lo, hi)
        return c + (c.round() - c).detach()

    res = {}
    for B, K, O in WORKLOADS:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(B, K, generator=g)
        gy = torch.randn(B, O, generator=g)
        lin = torch.nn.Linear(K, O)
        for mode in MODES:
            def step():
                lin.zero_grad(set_to_none=False)
                xi = x.detach().requires_grad_(True)
                if mode == "float":
                    y = lin(xi)
                else:
                    wq = fq(lin.weight * sw, -128, 127)
                    bq = fq(lin.bias * (sx * sw) / 128, -1024, 1016) * 128
                    if mode == "qat_pn":
                        xq = fq(torch.cat([F.relu(xi), F.relu(-xi)], 1) * sx, 0, 255)
                        acc = F.linear(xq, torch.cat([wq, -wq], 1), bq)
                    else:
                        acc = F.linear(fq(xi * sx, 0, 255), wq, bq)
                    y = fq(acc * sy / (sx * sw), -128, 127) / sy
                y.backward(gy)
            res[f"{mode} B{B} {K}->{O}"] = median_ms(step, repeat)
    return res


def report(t, w, tr):
    print(f"{'workload':28s} {'witnp':>9s} {'torch':>9s} {'ratio':>7s}")
    for B, K, O in WORKLOADS:
        for mode in MODES:
            k = f"{mode} B{B} {K}->{O}"
            tv = tr.get(k)
            print(f"{k:28s} {w[k]:9.3f} " + (f"{tv:9.3f} {w[k] / tv:7.2f}" if tv else f"{'-':>9s} {'-':>7s}"))
        gk = f"B{B} {K}->{O}"
        rate = w[f"sgemm GFLOP/s {gk}"]
        share = w[f"sgemm {gk}"] / w[f"qat_false {gk}"]
        print(f"  sgemm of the 3 products: {w[f'sgemm {gk}']:.3f} ms ({rate:.1f} GFLOP/s); "
              f"QAT FALSE step runs at {100 * share:.0f}% of that rate")


if __name__ == "__main__":
    bench_main(__file__, witnp_worker, torch_worker, report, repeat=30)
