"""ocjax: object-centric representation learning in JAX and Flax."""

import setuptools

setuptools.setup(
    name="ocjax",
    version="0.1.0",
    description="Object-centric representation learning (slots and masks) in JAX/Flax.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["ocjax", "ocjax.*"]),
    python_requires=">=3.11,<3.14",
    install_requires=[
        "jax>=0.4.35",
        "flax>=0.10.2",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.10",
        "ml_collections>=0.1.1",
        "absl-py>=2.0",
        "numpy>=1.26",
        "ml_dtypes>=0.4",
        "scipy>=1.11",
        "scikit-learn>=1.4",
        "threadpoolctl>=3.1",
        "pillow>=10.1",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "tensorboardX>=2.6",
        "tensorflow-datasets>=4.9.6",
        "array_record>=0.5",
        "grain>=0.2.6",
        "importlib_resources>=6.0",
    ],
    extras_require={
        # torch, torchvision and timm are the references for loading DINO / DINOv2 weights
        # (ocjax itself reads the files without torch).
        "test": [
            "pytest>=8.0",
            # pytest.ini runs the suite on up to 2 worker processes (most tests compile on one core).
            "pytest-xdist>=3.5",
            "chex>=0.1.87",
            "scikit-image>=0.22",
            "torch>=2.4",
            "torchvision>=0.19",
            "timm>=1.0.9",
            "safetensors>=0.4",
            # tests/test_notebooks.py runs the notebooks in a Jupyter kernel.
            "nbclient>=0.10",
            "nbformat>=5.9",
            "ipykernel>=6.29",
        ],
        "tf": ["tensorflow-cpu>=2.16"],
    },
)
