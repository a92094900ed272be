"""Analysis tools: where accuracy goes (per-layer comparison of the float, quantized and noisy model)."""
