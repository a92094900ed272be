"""Models the export tests share (the integer engine, the C reference and ONNX must all run them)."""
import witnp as wn


def branching_model(q):
    """A Conv2d, then Residual (Add), Branches (Cat, Mul, Divide with Sqrt), Mean and a Linear, all under q;
    input (N, 2, 6, 6)."""
    return wn.Sequential(
        wn.Conv2d(2, 4, 3, padding=1, config=q), wn.Residual(wn.Conv2d(4, 4, 3, padding=1, config=q), merge=wn.Add(config=q)),
        wn.Branches(wn.Conv2d(4, 2, 1, config=q), wn.Conv2d(4, 2, 1, config=q), merge=wn.Cat(dim=1, config=q)),
        wn.Branches(wn.Conv2d(4, 4, 1, config=q), wn.Conv2d(4, 4, 1, config=q), merge=wn.Mul(config=q)),
        wn.Branches(wn.Conv2d(4, 4, 1, config=q), wn.Sqrt(config=q), merge=wn.Divide(config=q)),
        wn.Mean(dim=(2, 3), config=q), wn.Linear(4, 3, config=q))
