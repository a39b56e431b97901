"""ocjax: object-centric representation learning in JAX and Flax."""

from ocjax import xla_flags

xla_flags.add_cpu_defaults()  # Before JAX creates its CPU backend.

__version__ = "0.1.0"
