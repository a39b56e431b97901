"""ocjax's XLA:CPU defaults: added only when the user has not set them and jaxlib knows them."""

import os
import subprocess
import sys

from ocjax import xla_flags


def test_defaults_are_appended_unless_the_user_set_the_flag(monkeypatch):
    monkeypatch.setattr(xla_flags, "jaxlib_knows", lambda flag: True)
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    xla_flags.add_cpu_defaults(environ)
    assert environ["XLA_FLAGS"].split() == [
        "--xla_force_host_platform_device_count=2",
        f"--{xla_flags.YNN_FLAG}=",
    ]
    mine = {"XLA_FLAGS": f"--{xla_flags.YNN_FLAG}=FUSION_TYPE_INDIVIDUAL_CONVOLUTION"}
    xla_flags.add_cpu_defaults(mine)
    assert mine["XLA_FLAGS"] == f"--{xla_flags.YNN_FLAG}=FUSION_TYPE_INDIVIDUAL_CONVOLUTION"
    off = {"OCJAX_XLA_DEFAULTS": "0"}
    xla_flags.add_cpu_defaults(off)
    assert "XLA_FLAGS" not in off


def test_a_flag_jaxlib_does_not_know_is_never_added(monkeypatch):
    assert not xla_flags.jaxlib_knows("xla_cpu_flag_that_no_xla_has")
    monkeypatch.setattr(xla_flags, "jaxlib_knows", lambda flag: False)
    environ: dict[str, str] = {}
    xla_flags.add_cpu_defaults(environ)
    assert environ == {}


def test_importing_ocjax_sets_the_flag_before_jax_starts_and_jax_accepts_it():
    code = (
        "import os, ocjax, jax, jax.numpy as jnp; "
        "x = jnp.ones((1, 8, 8, 3)); "
        "k = jnp.ones((3, 3, 3, 4)); "
        "y = jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME', "
        "dimension_numbers=('NHWC', 'HWIO', 'NHWC')); "
        "print(os.environ.get('XLA_FLAGS', ''), float(y[0, 4, 4, 0]))"
    )
    environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "OCJAX_XLA_DEFAULTS")}
    run = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    flags, value = run.stdout.split()[:-1], run.stdout.split()[-1]
    expected = [f"--{xla_flags.YNN_FLAG}="] if xla_flags.jaxlib_knows(xla_flags.YNN_FLAG) else []
    assert flags == expected and float(value) == 27.0
