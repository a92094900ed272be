"""One table-driven contract over every layer of the package (design.md): shapes and dtypes, gradient keys,
gradients that accumulate, and inference forwards that change no statistics."""
import numpy as np
import pytest

import witnp as wn

Q = wn.LayerConfig(use_quantization=True, use_auto_scale=True, scale_x=16, scale_weight=64, scale_y=16,
                   handle_neg_in="PN")
QN = Q.replace(noise_level=3)
IMG = (2, 3, 6, 6)

# name: (factory, input shape(s))
LAYERS = {
    "Linear": (lambda c: wn.Linear(5, 4, config=c), (3, 5)),
    "Conv2d": (lambda c: wn.Conv2d(3, 4, 3, padding=1, config=c), IMG),
    "Conv1d": (lambda c: wn.Conv1d(3, 4, 3, stride=2, padding=1, config=c), (2, 3, 9)),
    "Conv2d-PN": (lambda c: wn.Conv2d(3, 4, 3, stride=2, config=c and c.replace(handle_neg_in="PN")), IMG),
    "Conv2d-to_linear": (lambda c: wn.Conv2d(3, 2, 2, config=c and c.replace(to_linear=True)), IMG),
    "ConvTranspose2d": (lambda c: wn.ConvTranspose2d(3, 2, 3, stride=2, output_padding=1, config=c), IMG),
    "ReLU": (lambda c: wn.ReLU(config=c), IMG),
    "GELU": (lambda c: wn.GELU(config=c), IMG),
    "Sigmoid": (lambda c: wn.Sigmoid(config=c), IMG),
    "Tanh": (lambda c: wn.Tanh(config=c), IMG),
    "PReLU": (lambda c: wn.PReLU(3, config=c), IMG),
    "Sqrt": (lambda c: wn.Sqrt(config=c), IMG),
    "Mean": (lambda c: wn.Mean(dim=-1, keepdim=True, config=c), IMG),
    "Add": (lambda c: wn.Add(config=c), (IMG, IMG)),
    "Mul": (lambda c: wn.Mul(config=c), (IMG, IMG)),
    "Divide": (lambda c: wn.Divide(config=c), (IMG, IMG)),
    "Cat": (lambda c: wn.Cat(dim=1, config=c), (IMG, IMG)),
    "BatchNorm2d": (lambda c: wn.BatchNorm2d(3, config=c), IMG),
    "BatchNorm1d": (lambda c: wn.BatchNorm1d(3, config=c), (4, 3, 5)),
    "Flatten": (lambda c: wn.Flatten(config=c), IMG),
    "Reshape": (lambda c: wn.Reshape(9, 12, config=c), IMG),
    "Dropout": (lambda c: wn.Dropout(0.3, config=c), IMG),
    "MaxPool2d": (lambda c: wn.MaxPool2d(2, config=c), IMG),
    "AvgPool2d": (lambda c: wn.AvgPool2d(2, stride=1, padding=1, config=c), IMG),
    "Sequential": (lambda c: wn.Sequential(wn.Conv2d(3, 2, 3, config=c), wn.ReLU(), wn.Flatten(),
                                           wn.Linear(32, 3, config=c)), IMG),
    "Residual": (lambda c: wn.Residual(wn.Conv2d(3, 3, 3, padding=1, config=c), merge=wn.Add(config=c)), IMG),
    "Branches": (lambda c: wn.Branches(wn.Conv2d(3, 1, 1, config=c), wn.Conv2d(3, 2, 1, config=c),
                                       merge=wn.Cat(dim=1, config=c)), IMG),
    "GRU": (lambda c: wn.GRU(4, 3, config=c), (2, 5, 4)),
    "GRU-last": (lambda c: wn.GRU(4, 3, config=c, return_sequences=False), (2, 5, 4)),
    "GRUCell": (lambda c: wn.GRUCell(4, 3, config=c), ((2, 4), (2, 3))),
}
MODES = {"float": wn.LayerConfig(), "quant": Q, "noisy": QN, "quant-FALSE": Q.replace(handle_neg_in="FALSE"),
         "quant-Shift": Q.replace(handle_neg_in="Shift", shift_num=0.5),
         "noisy-FALSE": QN.replace(handle_neg_in="FALSE")}
CASES = [(n, mode) for n in sorted(LAYERS) for mode in MODES]
# refused by design (chip.md §3, docs/gru.md): the contract is then a clear refusal at construction
UNSUPPORTED = {("ConvTranspose2d", "quant-Shift"), ("GRU", "quant-Shift"), ("GRU-last", "quant-Shift"),
               ("GRUCell", "quant-Shift")}
POSITIVE = {"Sqrt", "Divide"}  # defined on positive inputs (a square root, a divisor): fed |x| + 0.1


def inputs(shape, seed, signed=True):
    """Standard-normal inputs (both signs, so FALSE's and Shift's clips and PN's negative branch all act);
    positive ones where the op needs them."""
    rng = np.random.default_rng(seed)
    one = (lambda s: rng.normal(size=s).astype(np.float32)) if signed else \
        (lambda s: (np.abs(rng.normal(size=s)) + 0.1).astype(np.float32))
    if isinstance(shape[0], tuple):
        return tuple(one(s) for s in shape)
    return one(shape)


def params_of(layer):
    return dict(layer.named_params()), dict(layer.named_grads()), dict(layer.named_stats())


@pytest.mark.parametrize("name, mode", CASES)
def test_layer_contract(name, mode):
    make, shape = LAYERS[name]
    if (name, mode) in UNSUPPORTED:
        with pytest.raises(ValueError, match=f"{name.split('-')[0]}: handle_neg_in='Shift' is not supported"):
            make(MODES[mode])
        return
    layer = make(MODES[mode])
    params, grads, stats = params_of(layer)
    assert list(params) == list(grads)
    for k in params:
        assert params[k].dtype == np.float32 and grads[k].shape == params[k].shape and not grads[k].any()
    x = inputs(shape, 0, signed=name not in POSITIVE)
    before = {k: np.array(v, copy=True) for k, v in stats.items()}
    y, _ = layer.forward(x, train=False, rng=np.random.default_rng(0))
    after = dict(layer.named_stats())
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before), \
        "an inference forward changed stats"
    assert y.dtype == np.float32
    y, ctx = layer.forward(x, train=True, rng=np.random.default_rng(1))
    gy = np.random.default_rng(2).normal(size=y.shape).astype(np.float32)
    dx = layer.backward(gy, ctx)
    for d, xi in zip(dx if isinstance(x, tuple) else (dx,), x if isinstance(x, tuple) else (x,)):
        assert d.shape == xi.shape and d.dtype == np.float32
    once = {k: v.copy() for k, v in dict(layer.named_grads()).items()}
    layer.backward(gy, ctx)
    for k, v in dict(layer.named_grads()).items():
        np.testing.assert_allclose(v, 2 * once[k], rtol=1e-6, atol=1e-7, err_msg=k)
    layer.zero_grad()
    assert not any(g.any() for g in dict(layer.named_grads()).values())


def test_every_public_layer_is_in_the_table():
    public = {n for n in wn.layers.__all__ if isinstance(getattr(wn, n), type) and issubclass(getattr(wn, n), wn.Layer)}
    abstract = {"Layer", "ArrayLayer", "DigitalOp", "Model"}
    assert public - abstract <= set(LAYERS), public - abstract - set(LAYERS)
