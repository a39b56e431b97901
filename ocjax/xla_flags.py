"""XLA:CPU defaults that ocjax adds to `XLA_FLAGS` before JAX starts its CPU backend.

jaxlib 0.10 hands convolutions and their fusions to YNNPACK on the CPU. On this project's
2-core AVX-512 machine that made the small convolutions of the object-centric models up to
twice as slow as XLA's own kernels (`docs/benchmarks.md`, "YNNPACK off"): Rotating
Features' 4Shapes step 1.60 -> 0.88 s, the Slot Attention autoencoder's CLEVR step
6.7 -> 4.5 s. ocjax therefore turns YNNPACK fusions off, unless the user's `XLA_FLAGS`
already says what to do with them, and only where the installed jaxlib knows the flag (an
unknown flag would abort XLA). The flag only concerns the CPU backend.
"""

import glob
import mmap
import os

YNN_FLAG = "xla_cpu_experimental_ynn_fusion_type"
DEFAULTS = (f"--{YNN_FLAG}=",)  # An empty list of fusion types: no YNNPACK fusions.


def jaxlib_knows(flag: str) -> bool:
    """Whether the installed jaxlib's XLA defines `flag` (searched in its shared libraries)."""
    import jaxlib

    needle = flag.encode()
    for path in glob.glob(os.path.join(os.path.dirname(jaxlib.__file__), "*.so")):
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                continue
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as library:
                if library.find(needle) >= 0:
                    return True
    return False


def add_cpu_defaults(environ: dict[str, str] | os._Environ = os.environ) -> None:
    """Appends ocjax's XLA:CPU defaults to `environ["XLA_FLAGS"]` unless already set there.

    Takes effect if called before JAX creates its CPU backend (ocjax calls it on import);
    `OCJAX_XLA_DEFAULTS=0` leaves `XLA_FLAGS` alone.
    """
    flags = environ.get("XLA_FLAGS", "")
    if environ.get("OCJAX_XLA_DEFAULTS") == "0" or YNN_FLAG in flags:
        return
    if jaxlib_knows(YNN_FLAG):
        environ["XLA_FLAGS"] = " ".join(filter(None, [flags, *DEFAULTS]))
