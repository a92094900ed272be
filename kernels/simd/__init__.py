"""The SIMD layer: the vector width (`width`) and the register tiles written in LLVM IR that every fast
kernel builds on (`tile`: multiply-add tile, `dot_tile`: dot-product tile, `gather`: table lookups)."""
from .width import ENV, LANES, host_lanes

__all__ = ["ENV", "LANES", "host_lanes"]
