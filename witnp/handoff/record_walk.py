"""The walk over an export's layer records that every artefact built from them shares (C reference, ONNX):
Sequential children in turn; Residual and Branches run their paths on the same input (a Residual without a
shortcut path adds its input) and then their merge. A subclass gives `leaf` and `merge`; the state threaded
through is its own (for instance: the tensor, its scale and its per-example shape)."""
from __future__ import annotations

__all__ = ["RecordWalk"]


class RecordWalk:
    def run(self, records, *state):
        for name, rec in records:
            state = self.node(name, rec, *state)
        return state

    def node(self, name, rec, *state):
        t = rec["type"]
        if t == "Sequential":
            return self.run(rec["children"], *state)
        if t in ("Residual", "Branches"):
            kids = rec["children"]
            outs = [self.node(n, r, *state) for n, r in kids[:-1]]
            if t == "Residual" and len(outs) == 1:
                outs.append(tuple(state))  # the identity shortcut
            return self.merge(kids[-1][0], kids[-1][1], outs)
        return self.leaf(name, rec, *state)

    def leaf(self, name, rec, *state):  # pragma: no cover - interface
        raise NotImplementedError

    def merge(self, name, rec, outs):  # pragma: no cover - interface
        raise NotImplementedError
