"""Conv2d / ConvTranspose2d forward+backward: witnp float and QAT against torch (float, and fake-quant with
straight-through gradients), each side in its own process.

usage: python bench/bench_conv.py [--threads 1,2] [--repeat 20] [--rounds 7]
Both workers stay up and take turns per workload (`_timing.paired`): each ratio is the median of per-round
ratios of figures taken about a second apart, shown with its range over the rounds. Times: medians in ms,
1 thread first; ratio = witnp / torch.
QAT here: handle_neg_in FALSE (Conv2d's signed input; ConvTranspose2d's unsigned), 8/8 bits, scales 16/64/8.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import paired_main  # noqa: E402

# name: (transposed, B, ci, co, k, stride, padding, H)
WORKLOADS = {
    "Conv2d B32 16->32 3x3 32x32 p1": (False, 32, 16, 32, 3, 1, 1, 32),
    "Conv2d B10 10->20 3x3 30x30 (vendor demo)": (False, 10, 10, 20, 3, 1, 0, 30),
    "ConvT B32 32->16 k4 s2 p1 16x16": (True, 32, 32, 16, 4, 2, 1, 16),
}
SX, SW, SY = 16.0, 64.0, 8.0


def witnp_cases():
    import numpy as np

    import witnp as wn
    res = {}
    for name, (tr, B, ci, co, k, s, p, H) in WORKLOADS.items():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(B, ci, H, H)).astype(np.float32)
        for mode in ("float", "qat"):
            cfg = wn.LayerConfig() if mode == "float" else wn.LayerConfig(
                use_quantization=True, use_auto_scale=False, scale_x=SX, scale_weight=SW, scale_y=SY)
            cls = wn.ConvTranspose2d if tr else wn.Conv2d
            layer = cls(ci, co, k, stride=s, padding=p, config=cfg)
            y, _ = layer.forward(x)
            gy = rng.normal(size=y.shape).astype(np.float32)

            def step(layer=layer, x=x, gy=gy):
                y, ctx = layer.forward(x, train=True)
                layer.backward(gy, ctx)
            res[f"{mode} {name}"] = step
    return res


def torch_cases():
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    def fq(v, lo, hi):
        c = v.clamp(lo, hi)
        return c + (c.round() - c).detach()

    res = {}
    for name, (tr, B, ci, co, k, s, p, H) in WORKLOADS.items():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(B, ci, H, H, generator=g)
        layer = (torch.nn.ConvTranspose2d if tr else torch.nn.Conv2d)(ci, co, k, stride=s, padding=p)
        op = F.conv_transpose2d if tr else F.conv2d
        with torch.no_grad():
            gy = torch.randn(layer(x).shape, generator=g)
        for mode in ("float", "qat"):
            def step(layer=layer, x=x, gy=gy, mode=mode, op=op, tr=tr, s=s, p=p):
                layer.zero_grad(set_to_none=False)
                xi = x.detach().requires_grad_(True)
                if mode == "float":
                    y = layer(xi)
                else:
                    xq = fq(xi * SX, 0, 255) if tr else fq(xi * SX, -128, 127)
                    wq = fq(layer.weight * SW, -128, 127)
                    bq = fq(layer.bias * (SX * SW) / 128, -1024, 1016) * 128
                    acc = op(xq, wq, bq, stride=s, padding=p)
                    y = fq(acc * SY / (SX * SW), -128, 127) / SY
                y.backward(gy)
            res[f"{mode} {name}"] = step
    return res


def cases(side):
    return witnp_cases() if side == "witnp" else torch_cases()


# ratio labels: witnp / torch of the same mode, and witnp / torch float
PAIRS = {}
for _name in WORKLOADS:
    for _mode in ("float", "qat"):
        _k = f"{_mode} {_name}"
        PAIRS[_k] = ("witnp", _k, "torch", _k)
        PAIRS[_k + " vs float"] = ("witnp", _k, "torch", f"float {_name}")


def report(t, w, tr, ratios):
    def r(label):
        m = ratios.get(label)
        return f"{m[0]:5.2f} ({m[1]:.2f}-{m[2]:.2f})" if m else f"{'-':>16s}"
    print(f"{'workload':48s} {'witnp':>8s} {'torch':>8s} {'ratio (range)':>17s} {'vs torch float':>17s}")
    for name in WORKLOADS:
        for mode in ("float", "qat"):
            k = f"{mode} {name}"
            tv = f"{tr[k]:8.3f}" if k in tr else f"{'-':>8s}"
            print(f"{k:48s} {w[k]:8.3f} {tv} {r(k):>17s} {r(k + ' vs float'):>17s}")


if __name__ == "__main__":
    paired_main(__file__, cases, report, PAIRS, repeat=20)
