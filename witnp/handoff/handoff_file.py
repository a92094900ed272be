"""The handoff file: the export's layer records (and golden vectors) in HDF5, readable with plain h5py
(docs/firmware-export.md). Written atomically; read back for the integer engine.

Records: a list of (name, record) pairs; a container's record holds "type" and "children" (its own list),
a leaf's record the layer's integer arrays and attributes (`export.export_model`).
"""
from __future__ import annotations

import json
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..quant import pow2_exponent
from . import model_file as hdf5

__all__ = ["FORMAT", "VERSION", "leaf_records", "write_handoff", "read_handoff"]

FORMAT = "witnp-firmware"
VERSION = "1.0"


def leaf_records(records):
    """(name, record) of every leaf layer, in order, through nested containers' "children"."""
    for name, rec in records:
        if "children" in rec:
            yield from leaf_records(rec["children"])
        else:
            yield name, rec


def _structure(records):
    return [[name, {"type": rec["type"], "children": _structure(rec["children"])} if "children" in rec else "leaf"]
            for name, rec in records]


def write_handoff(path, records, golden: Optional[Dict[str, np.ndarray]] = None) -> None:
    """Write the records (and golden vectors) to an HDF5 file readable with plain h5py, atomically."""
    from .. import __version__

    def write(f):
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["witnp_version"] = __version__
        f.attrs["layer_names"] = json.dumps([n for n, _ in leaf_records(records)])
        f.attrs["structure"] = json.dumps(_structure(records))
        f.attrs["warnings"] = json.dumps(records[0][1].get("warnings", []) if records else [])
        for name, rec in leaf_records(records):
            g = f.create_group("layers/" + name)
            for k, v in rec.items():
                if k == "warnings":
                    continue
                if isinstance(v, np.ndarray):
                    g.create_dataset(k, data=v)
                elif isinstance(v, (tuple, list)):
                    g.attrs[k] = np.asarray(v)
                else:
                    g.attrs[k] = v
            for k in ("scale_x", "scale_weight", "scale_y", "G"):
                if k in rec and pow2_exponent(rec[k]) is not None:
                    g.attrs["shift_" + k.replace("scale_", "")] = pow2_exponent(rec[k])
        if golden:
            gg = f.create_group("golden")
            for k, v in golden.items():
                gg.create_dataset(k, data=v)
    hdf5.atomic_h5(path, write)


def read_handoff(path) -> List[Tuple[str, dict]]:
    """Records back from a handoff file (for the integer engine); refuses other files with a message."""
    f = hdf5._open(path)
    with f:
        if f.attrs.get("format") != FORMAT:
            raise hdf5.ModelFileError(f"{path}: not a witnp firmware export (format {f.attrs.get('format')!r})")
        leaves = {}
        for name in json.loads(f.attrs["layer_names"]):
            g = f["layers/" + name]
            rec = {k: (v.item() if isinstance(v, np.generic) else (tuple(v) if isinstance(v, np.ndarray) else v))
                   for k, v in g.attrs.items()}
            rec.update({k: d[()] for k, d in g.items()})
            for k in ("kernel_size", "stride", "padding"):
                if k in rec:
                    rec[k] = tuple(int(v) for v in rec[k])
            leaves[name] = rec

        def rebuild(struct):
            return [(name, {"type": node["type"], "children": rebuild(node["children"])} if node != "leaf"
                     else leaves[name]) for name, node in struct]
        return rebuild(json.loads(f.attrs["structure"]))
