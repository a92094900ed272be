"""GRU recurrences, time-major: the float cell (`float_step`) and the quantized cell (`quant_step`)."""
