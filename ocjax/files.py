"""Workdir files on any file system `etils.epath` reaches: local folders and cloud buckets
(`gs://`, `s3://`, `az://`), which on a TPU pod are the only workdirs every host shares.

Cloud objects cannot be appended to, so text files are rewritten whole (`write_text`), and
TensorBoard's event files go through `EpathEventWriter`, which uploads the whole file on each
flush. Checkpoints go through Orbax, which reaches the same paths itself.
"""

import importlib.util
import io
import os

from etils import epath
from tensorboardX import record_writer

# What epath needs to reach each scheme (any one of the packages).
BACKENDS = {"gs": ("tensorflow", "gcsfs"), "s3": ("s3fs",), "az": ("adlfs",)}


def scheme(path: str) -> str | None:
    """`gs` for `gs://bucket/run`, None for a local path."""
    head, sep, _ = str(path).partition("://")
    return head if sep else None


def workdir_path(workdir: str) -> epath.Path:
    """The workdir as an `epath.Path` (absolute if local), its file system checked first."""
    kind = scheme(workdir)
    if kind is None:
        return epath.Path(os.path.abspath(os.path.expanduser(workdir)))
    if kind not in BACKENDS:
        raise ValueError(
            f"Workdir {workdir} uses {kind}://, which ocjax cannot write to; use a local folder "
            f"or one of {', '.join(s + '://' for s in BACKENDS)}."
        )
    if not any(importlib.util.find_spec(p) for p in BACKENDS[kind]):
        raise ValueError(
            f"Workdir {workdir} needs a {kind}:// file system: pip install {BACKENDS[kind][-1]}"
            + (f" (or {' or '.join(BACKENDS[kind][:-1])})" if len(BACKENDS[kind]) > 1 else "")
            + "."
        )
    record_writer.register_writer_factory(kind, EpathEventWriterFactory())
    return epath.Path(workdir)


def write_text(path: epath.Path, text: str) -> None:
    """Writes `text` to `path` whole: through a temporary file and a rename where the file
    system has renames (a local disk), so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if scheme(str(path)) is not None:  # Object stores write whole objects already.
        path.write_text(text)
        return
    partial = path.parent / (path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


class EpathEventWriter:
    """A TensorBoard event file written through epath: buffered, uploaded whole on flush."""

    def __init__(self, path: str):
        self.path = epath.Path(path)
        self.buffer = io.BytesIO()

    def write(self, data: bytes) -> None:
        """Appends a record (bytes) to the buffer."""
        self.buffer.write(data)

    def flush(self) -> None:
        """Writes the whole event file."""
        self.path.write_bytes(self.buffer.getvalue())

    def close(self) -> None:
        """Writes the whole event file a last time."""
        self.flush()


class EpathEventWriterFactory:
    """tensorboardX's hook for a URL scheme: event files and their folder through epath."""

    def open(self, path: str) -> EpathEventWriter:
        """A writer for the event file `path`."""
        return EpathEventWriter(path)

    def directory_check(self, path: str) -> None:
        """Creates the log folder `path`."""
        epath.Path(path).mkdir(parents=True, exist_ok=True)
