"""witnp's metadata: the one source of truth (pyproject.toml only names the build backend)."""
from setuptools import setup

setup(
    name="witnp",
    version="0.1.0",
    description="Quantization- and noise-aware training for analog compute-in-memory chips, NumPy + Numba only",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",  # tomllib
    packages=["witnp", "witnp.array", "witnp.array.conv", "witnp.layers", "witnp.train", "witnp.handoff",
              "witnp.analysis", "witnp.sweep",
              "witnp.kernels", "witnp.kernels.simd", "witnp.kernels.conv", "witnp.kernels.gru", "witnp.kernels.quant",
              "witnp.cli", "witnp._data"],
    # kernels/, cli/ and data/ live at the top of the repository but install inside witnp, so nothing generic
    # like `kernels` or `cli` lands top-level in site-packages.
    package_dir={"witnp": "witnp", "witnp.kernels": "kernels", "witnp.cli": "cli", "witnp._data": "data"},
    package_data={"witnp._data": ["*.npz", "README.md"], "witnp.cli": ["*.toml"], "witnp.handoff": ["c_runtime.c"]},
    install_requires=["numpy>=1.24", "numba>=0.59", "h5py>=3.8", "click>=8.1", "threadpoolctl>=3.1"],
    extras_require={"test": ["pytest>=7", "hypothesis>=6"], "plot": ["matplotlib>=3.5"],
                    "dask": ["dask[distributed]>=2023.1"], "onnx": ["onnx>=1.14", "onnxruntime>=1.16"]},
    entry_points={"console_scripts": ["witnp=witnp.cli.main:main"]},
)
