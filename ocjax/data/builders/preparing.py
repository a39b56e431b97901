"""First use of a dataset: one announced step instead of tfds's banner and nested progress bars."""

import contextlib
import io
import sys
import time
from typing import Any

import tensorflow_datasets as tfds


def download_and_prepare(builder: tfds.core.DatasetBuilder, **kwargs: Any) -> None:
    """Prepares `builder` (if its files are missing) announcing it in one line on stderr, with
    the time it took; tfds's own output is kept only if preparing fails."""
    if builder.is_prepared():
        return
    print(
        f"ocjax: preparing {builder.name}/{builder.builder_config.name} in {builder.data_dir} "
        "(first use only; later runs reuse it) ...",
        file=sys.stderr,
        flush=True,
    )
    start = time.perf_counter()
    captured = io.StringIO()
    tfds.display_progress_bar(False)
    try:
        with contextlib.redirect_stdout(captured):
            builder.download_and_prepare(**kwargs)
    except BaseException:
        sys.stdout.write(captured.getvalue())
        raise
    finally:
        tfds.display_progress_bar(True)
    print(f"ocjax: prepared in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
