"""What leaves witnp: model files, the firmware export and the integer engine that checks it.

    model_file.py    witnp's own model files and checkpoints (HDF5): save, load, atomic writes
    export.py        the firmware export: a QAT model as integer layer records, golden vectors, C and JSON
    handoff_file.py  the records in the handoff HDF5 file (written, read back)
    engine.py        the integer engine: runs the records with integers only, bit for bit with the model
    int_ops.py       the engine's integer arithmetic (shift rounding, the quantized GRU cell)

Arrows point one way: export -> engine -> handoff_file -> model_file.
"""
