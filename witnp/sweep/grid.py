"""A sweep's grid: --grid KEY=V1,V2,... items (values as --set takes them, TOML) and --seeds N, expanded to
points in a fixed order (the grid's first key varies slowest; the seed fastest)."""
from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

__all__ = ["Point", "parse_grid", "expand", "SEED_KEY"]

SEED_KEY = "seed"
_KEY = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_\"]+)*$")


@dataclass(frozen=True)
class Point:
    """One run of the sweep: `sets` are the --set items ("key=value") that turn the base config into this
    point's; `name` (file-safe, stable for the same assignments) names its run folder and its results row."""
    sets: Tuple[str, ...]

    @property
    def assignments(self) -> List[Tuple[str, str]]:
        return [tuple(s.split("=", 1)) for s in self.sets]

    @property
    def name(self) -> str:
        readable = "_".join(f"{k.rpartition('.')[2]}={v}" for k, v in self.assignments)
        readable = re.sub(r"[^A-Za-z0-9_.=+-]", "-", readable)[:80]
        digest = hashlib.sha1("\n".join(self.sets).encode()).hexdigest()[:8]
        return f"{readable}_{digest}" if readable else digest


def _split_values(text: str) -> List[str]:
    """Split on the commas that are not inside brackets, braces or quotes: "1,[2,3],'a,b'" -> 3 values."""
    out, depth, quote, cur = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    out.append(cur.strip())
    return out


def parse_grid(items: Sequence[str]) -> List[Tuple[str, List[str]]]:
    """[(key, [value text, ...])] from --grid items; refuses a missing '=', an empty value, a key given twice
    and a value given twice for one key, naming the item."""
    grid, seen = [], set()
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key or not _KEY.match(key):
            raise ValueError(f"--grid {item!r}: expected KEY=V1,V2,... with a dotted key as --set takes it "
                             f"(e.g. quant.y_quant_bits=8,10,12)")
        values = _split_values(text)
        if any(not v for v in values):
            raise ValueError(f"--grid {item!r}: an empty value; expected comma-separated TOML values")
        if len(set(values)) != len(values):
            raise ValueError(f"--grid {item!r}: a value is given twice")
        if key in seen:
            raise ValueError(f"--grid {key}: given twice; put all its values in one --grid {key}=V1,V2,...")
        seen.add(key)
        grid.append((key, values))
    return grid


def expand(grid: List[Tuple[str, List[str]]], seeds: Optional[int] = None) -> List[Point]:
    """Every combination of the grid's values (and seeds 0..seeds-1 as the last key), as points."""
    axes = list(grid)
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ValueError(f"--seeds {seeds!r}: expected a positive integer")
        if any(k == SEED_KEY for k, _ in axes):
            raise ValueError(f"--seeds and --grid {SEED_KEY}=...: pass one of them")
        axes.append((SEED_KEY, [str(s) for s in range(seeds)]))
    if not axes:
        return [Point(())]
    keys = [k for k, _ in axes]
    return [Point(tuple(f"{k}={v}" for k, v in zip(keys, combo)))
            for combo in itertools.product(*(vals for _, vals in axes))]
