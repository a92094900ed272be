"""Optimizers with torch's update rules (float32, in place), gradient clipping and learning-rate schedules.

An optimizer takes its parameters as a layer or model (anything with `named_params()` and `named_grads()`),
a dict {name: (param, grad)}, or a list of (name, param, grad). Its `state_dict()` holds the hyper-parameters
and per-parameter buffers by name, so it saves and loads by name.

Update rules (torch 2.x, single-tensor path), g the gradient, p the parameter:
    SGD:   g += wd·p; buf = g on the first step, else momentum·buf + (1 - dampening)·g;
           g = g + momentum·buf (nesterov) or buf; p -= lr·g
    Adam:  g += wd·p; m += (1 - β1)·(g - m); v = β2·v + (1 - β2)·g²;
           p -= (lr / (1 - β1^t)) · m / (sqrt(v) / sqrt(1 - β2^t) + eps)
    AdamW: p *= 1 - lr·wd, then Adam without weight decay in g.
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import numpy as np

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm", "StepLR", "CosineAnnealingLR", "LinearWarmup"]

f32 = np.float32


def _entries(params) -> List[Tuple[str, np.ndarray, np.ndarray]]:
    if hasattr(params, "named_params") and hasattr(params, "named_grads"):
        p, g = dict(params.named_params()), dict(params.named_grads())
        return [(k, p[k], g[k]) for k in p]
    if isinstance(params, dict):
        return [(k, v[0], v[1]) for k, v in params.items()]
    out = []
    for i, e in enumerate(params):
        out.append(tuple(e) if len(e) == 3 else (str(i),) + tuple(e))
    return out


class Optimizer:
    """Base: parameter bookkeeping, zero_grad, state_dict/load_state_dict."""

    hyper_names: Tuple[str, ...] = ()

    def __init__(self, params, **hyper):
        self.entries = _entries(params)
        if not self.entries:
            raise ValueError(f"{type(self).__name__}: no parameters to optimize")
        for name, p, g in self.entries:
            if p.dtype != np.float32 or g.shape != p.shape:
                raise TypeError(f"{type(self).__name__}: parameter {name!r} must be float32 with a gradient of its "
                                f"shape; got {p.dtype} {p.shape} and gradient {g.shape}")
        if not hyper.get("lr", 0) > 0:
            raise ValueError(f"{type(self).__name__}: lr={hyper.get('lr')!r}; expected a number > 0")
        self.hyper = hyper
        self.state: Dict[str, dict] = {}

    @property
    def lr(self) -> float:
        return self.hyper["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.hyper["lr"] = float(value)

    def zero_grad(self) -> None:
        for _, _, g in self.entries:
            g[...] = 0

    def step(self) -> None:
        for name, p, g in self.entries:
            self._update(self.state.setdefault(name, {}), p, g)

    def _update(self, st, p, g):  # pragma: no cover - interface
        raise NotImplementedError

    def state_dict(self) -> dict:
        """{"type", "hyper": {...}, "state": {param name: {buffer name: array or number}}}."""
        return {"type": type(self).__name__, "hyper": dict(self.hyper),
                "state": {k: {b: (v.copy() if isinstance(v, np.ndarray) else v) for b, v in st.items()}
                          for k, st in self.state.items()}}

    def load_state_dict(self, sd: dict) -> None:
        """Restore hyper-parameters and buffers; refuses another optimizer type or unknown/reshaped buffers."""
        if sd.get("type") != type(self).__name__:
            raise ValueError(f"{type(self).__name__}.load_state_dict: state is for {sd.get('type')!r}")
        shapes = {n: p.shape for n, p, _ in self.entries}
        for name, st in sd["state"].items():
            if name not in shapes:
                raise ValueError(f"{type(self).__name__}.load_state_dict: unknown parameter {name!r}")
            for b, v in st.items():
                if isinstance(v, np.ndarray) and v.shape != shapes[name]:
                    raise ValueError(f"{type(self).__name__}.load_state_dict: {name}.{b} has shape {v.shape}; "
                                     f"expected {shapes[name]}")
        self.hyper.update(sd["hyper"])
        self.state = {k: {b: (np.array(v, np.float32) if isinstance(v, np.ndarray) else v) for b, v in st.items()}
                      for k, st in sd["state"].items()}


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay (torch.optim.SGD)."""

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")
        super().__init__(params, lr=float(lr), momentum=float(momentum), dampening=float(dampening),
                         weight_decay=float(weight_decay), nesterov=bool(nesterov))

    def _update(self, st, p, g):
        h = self.hyper
        d = g + f32(h["weight_decay"]) * p if h["weight_decay"] else g
        if h["momentum"]:
            if "momentum_buffer" not in st:
                st["momentum_buffer"] = np.array(d, np.float32)
            else:
                buf = st["momentum_buffer"]
                buf *= f32(h["momentum"])
                buf += f32(1 - h["dampening"]) * d
            buf = st["momentum_buffer"]
            d = d + f32(h["momentum"]) * buf if h["nesterov"] else buf
        p -= f32(h["lr"]) * d


class Adam(Optimizer):
    """Adam (torch.optim.Adam; weight_decay as L2 added to the gradient)."""
    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1 and eps >= 0):
            raise ValueError(f"{type(self).__name__}: betas={betas!r} must lie in [0, 1) and eps={eps!r} >= 0")
        super().__init__(params, lr=float(lr), beta1=float(b1), beta2=float(b2), eps=float(eps),
                         weight_decay=float(weight_decay))

    def _update(self, st, p, g):
        h = self.hyper
        if not st:
            st.update(step=0, exp_avg=np.zeros_like(p), exp_avg_sq=np.zeros_like(p))
        st["step"] += 1
        t = st["step"]
        if self.decoupled:
            p *= f32(1 - h["lr"] * h["weight_decay"])
        elif h["weight_decay"]:
            g = g + f32(h["weight_decay"]) * p
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m += f32(1 - h["beta1"]) * (g - m)
        v *= f32(h["beta2"])
        v += f32(1 - h["beta2"]) * g * g
        step_size = h["lr"] / (1 - h["beta1"] ** t)
        denom = np.sqrt(v) / f32(math.sqrt(1 - h["beta2"] ** t)) + f32(h["eps"])
        p -= f32(step_size) * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW; default weight_decay 1e-2)."""
    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients so their global L2 norm is at most max_norm (torch's rule: factor
    max_norm/(norm + 1e-6), capped at 1). Returns the norm before clipping."""
    grads = [g for _, _, g in _entries(params)]
    total = math.sqrt(sum(float(np.dot(g.ravel().astype(np.float64), g.ravel())) for g in grads))
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for g in grads:
            g *= f32(coef)
    return total


class _Schedule:
    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def step(self) -> float:
        """Advance one epoch and set the optimizer's lr; returns it."""
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)
        return self.optimizer.lr

    def state_dict(self) -> dict:
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def load_state_dict(self, sd: dict) -> None:
        self.base_lr, self.last_epoch = float(sd["base_lr"]), int(sd["last_epoch"])


class StepLR(_Schedule):
    """lr = base·gamma^(epoch // step_size)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        super().__init__(optimizer)
        if step_size < 1:
            raise ValueError(f"StepLR: step_size={step_size!r}; expected >= 1")
        self.step_size, self.gamma = int(step_size), float(gamma)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class LinearWarmup(_Schedule):
    """lr = base·(epoch + 1)/(warmup_epochs + 1) for the first warmup_epochs epochs (the first epoch already at
    base/(warmup_epochs + 1)), then `after`'s schedule counted from the end of the warm-up (or base)."""

    def __init__(self, optimizer, warmup_epochs: int, after: "_Schedule" = None):
        super().__init__(optimizer)
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise ValueError(f"LinearWarmup: warmup_epochs={warmup_epochs!r}; expected an integer >= 0")
        self.warmup, self.after = warmup_epochs, after
        optimizer.lr = self.lr_at(0)

    def lr_at(self, epoch: int) -> float:
        if epoch < self.warmup:
            return self.base_lr * (epoch + 1) / (self.warmup + 1)
        return self.after.lr_at(epoch - self.warmup) if self.after is not None else self.base_lr


class CosineAnnealingLR(_Schedule):
    """lr = eta_min + (base - eta_min)·(1 + cos(π·epoch/T_max))/2 (the closed form of torch's schedule)."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
        super().__init__(optimizer)
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max={T_max!r}; expected >= 1")
        self.T_max, self.eta_min = int(T_max), float(eta_min)

    def lr_at(self, epoch: int) -> float:
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
