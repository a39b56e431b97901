"""Shared fixtures: a tiny experiment config and a tiny rendered dataset."""

import os
import shutil
import sys
import tempfile

# Compiling is most of the time of these tiny programs. XLA:CPU's backend optimisations off
# (LLVM at -O0, without its expensive passes) cut the time of the tests that train by a
# fifth to a third (measured on the 2-core CI machine); the programs' HLO, and so what they
# compute, is XLA's own either way. Set before JAX starts its backend; subprocesses inherit it.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), FAST_COMPILE]))

import jax
import pytest

# torch (the reference for loading DINO weights) probes for triton, its GPU compiler, on
# import; on this CPU-only suite that import segfaulted in a fresh CI venv once JAX and
# TensorFlow were loaded. Nothing here compiles for a GPU, so torch is told it is absent.
sys.modules.setdefault("triton", None)

from configs import clevr_sa_ae, clevr_slots


def tiny_config(data_dir: str):
    """The quick CLEVR-like autoencoder shrunk to seconds: 32x32 scenes, 8-channel layers."""
    config = clevr_sa_ae.get_config("quick")
    config.data.data_dir = data_dir
    config.data.resolution = 32
    config.data.max_objects = 4
    config.data.clevr_like.update(min_objects=2, num_train=48, num_validation=8, num_test=12)
    config.model.update(
        num_slots=4,
        num_iterations=2,
        slot_dim=16,
        mlp_hidden_dim=16,
        encoder_channels=[8, 8],
        decoder_initial_size=8,
        decoder_upsample_channels=[8, 8],
        decoder_hidden_channels=[8],
        kernel_size=3,
    )
    config.optimizer.schedule.update(learning_rate=1e-3, warmup_steps=2, decay_steps=100)
    config.training.update(
        batch_size=8,
        num_steps=6,
        log_every=2,
        checkpoint_every=3,
        image_every=1000,
        keep_checkpoints=5,
    )
    config.evaluation.update(batch_size=8, num_images=2)
    return config


def tiny_slots_config(data_dir: str, presets: str = ""):
    """The flagship contrastive experiment shrunk to seconds: 32x32 scenes, a 16-d ViT."""
    config = clevr_slots.get_config("+".join(filter(None, [presets, "quick"])))
    config.data.data_dir = data_dir
    config.data.resolution = 32
    config.data.max_objects = 4
    config.data.views.size = 32
    config.data.clevr_like.update(min_objects=2, num_train=48, num_validation=8, num_test=12)
    config.model.update(
        patch_size=4,
        dim=16,
        depth=1,
        num_heads=2,
        mlp_dim=32,
        num_queries=5,
        global_dim=16,
        projection_dim=8,
    )
    config.training.update(
        batch_size=8, num_epochs=1.0, log_every=2, checkpoint_every=3, image_every=1000
    )
    config.evaluation.update(batch_size=8, num_images=2)
    config.evaluation.probe.update(steps=50)
    return config


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    """A tensorflow-datasets directory shared by the tests of one session."""
    return str(tmp_path_factory.mktemp("tensorflow_datasets"))


@pytest.fixture
def config(data_dir):
    """A fresh tiny config per test."""
    return tiny_config(data_dir)


CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
_OWN_CACHE = pytest.StashKey[str]()


def pytest_configure(config):
    """Keeps JAX on the CPU and quiet in tests, and shares compiled programs between tests.

    Many tests train the same tiny models, in this process, in the other xdist worker and in
    subprocesses; a persistent compilation cache for the session (made by the controlling
    process, inherited by workers and subprocesses through the environment) compiles each
    program once. A `JAX_COMPILATION_CACHE_DIR` set by the user is kept.
    """
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not hasattr(config, "workerinput") and CACHE_ENV not in os.environ:
        os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="ocjax-test-jax-cache-")
        config.stash[_OWN_CACHE] = os.environ[CACHE_ENV]
    min_seconds = os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    min_bytes = os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    # JAX read the environment on import, before these were set; this process takes them here.
    jax.config.update("jax_compilation_cache_dir", os.environ[CACHE_ENV])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", int(min_bytes))


def pytest_unconfigure(config):
    """Removes the session's compilation cache if this process made it."""
    own = config.stash.get(_OWN_CACHE, None)
    if own:
        shutil.rmtree(own, ignore_errors=True)
