"""Where a build's intermediate files live: a local folder (``Path``), or a folder in any filesystem
pyarrow reaches by URI (``RemotePath``: ``s3://bucket/prefix?endpoint_override=host:port&scheme=http``,
``gs://``, ``hdfs://``; whatever ``pyarrow.fs.FileSystem.from_uri`` accepts).

Why one small location type rather than stages that each learn about object stores: the stages
already name their files with ``work_dir / name``, hand the names to units, and write and read them
as Arrow IPC or ``.npy``/``.npz`` files. ``RemotePath`` supports the same ``/``, ``name`` and
``mkdir`` (a no-op: object stores have no folders), and the few functions here (``open_input``,
``open_output``, ``ipc_writer``, ``list_files``, ``make_temp_dir``, ``remove_tree``, ``npy_rows``)
open either kind. For a ``Path`` they do exactly what the stages did before (``pa.OSFile``, a path
string for Arrow's writer, ``np.load(mmap_mode="r")``), so a local build keeps its zero-copy reads
and its speed. For a ``RemotePath`` a writer streams straight into the store
(``open_output_stream``: on S3 a multipart upload that only appears when the file is complete, so a
killed unit leaves nothing half-written), and a reader opens a random-access file there (Arrow IPC
files read only the byte ranges of the batches and columns asked for).

A ``RemotePath`` pickles as its URI, so it can be part of a unit that runs in another process or on
another node: the filesystem object is rebuilt there once per process (``_filesystem``), with the
credentials of that process's environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, an
instance role, ...). This module sits with ``mixer.core.tables`` in the lowest layer because
``SpillFiles`` reads through it.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
from pyarrow import fs as pafs


class RemotePath:
    """A file or folder under a root URI that pyarrow's filesystem layer opens (see the module
    docstring). ``root`` keeps the URI's query options (endpoint, scheme, region); ``rel`` is the
    ``/``-separated path below it."""

    def __init__(self, root: str, rel: str = "") -> None:
        self.root = root
        self.rel = rel.strip("/")

    def __truediv__(self, name: str) -> RemotePath:
        return RemotePath(self.root, f"{self.rel}/{name}" if self.rel else name)

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1] if self.rel else self.resolve()[1].rsplit("/", 1)[-1]

    @property
    def parent(self) -> RemotePath:
        if not self.rel:
            raise ValueError(f"{self}: the root of a remote work folder has no parent here")
        return RemotePath(self.root, self.rel.rsplit("/", 1)[0] if "/" in self.rel else "")

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: a file's key is enough in an object store, and pyarrow's ``create_dir``
        would leave empty marker objects behind that the build did not need."""

    def resolve(self) -> tuple[pafs.FileSystem, str]:
        """The filesystem (one per root and process) and this location's path in it."""
        filesystem, base = _filesystem(self.root)
        return filesystem, f"{base}/{self.rel}" if self.rel else base

    def __str__(self) -> str:
        base, sep, query = self.root.partition("?")
        return f"{base.rstrip('/')}/{self.rel}{sep}{query}" if self.rel else self.root

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and (other.root, other.rel) == (self.root, self.rel)

    def __hash__(self) -> int:
        return hash((self.root, self.rel))


#: a location in the work folder: a local (or shared, mounted) path, or a path in a pyarrow filesystem
WorkPath = Path | RemotePath


@functools.lru_cache(maxsize=64)
def _filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    """``FileSystem.from_uri`` once per root URI and process: an S3 client is costly to make, and
    every unit of a build opens many files under the same root."""
    filesystem, path = pafs.FileSystem.from_uri(root)
    return filesystem, path.rstrip("/")


def work_path(where: str | Path) -> WorkPath:
    """A work-folder location from what the user gave: a path, a ``file://`` URI (a local path,
    resolved by pyarrow), or any other URI pyarrow's filesystem layer accepts (a ``RemotePath``).
    Raises pyarrow's ``ArrowInvalid``/``OSError`` for a URI it cannot open; the build turns them into
    a message naming the work folder."""
    text = str(where)
    if "://" not in text:
        return Path(text)
    filesystem, path = pafs.FileSystem.from_uri(text)
    if isinstance(filesystem, pafs.LocalFileSystem):
        return Path(path)
    return RemotePath(text)


def open_input(path: WorkPath) -> pa.NativeFile:
    """A random-access file to read (Arrow IPC readers and ``np.load`` take it)."""
    if isinstance(path, RemotePath):
        filesystem, where = path.resolve()
        return filesystem.open_input_file(where)
    return pa.OSFile(str(path))


def open_output(path: WorkPath) -> IO[bytes] | pa.NativeFile:
    """A binary file to write (``np.save``/``np.savez`` take it); close it to finish the file."""
    if isinstance(path, RemotePath):
        filesystem, where = path.resolve()
        return filesystem.open_output_stream(where)
    return open(path, "wb")


class IpcWriter:
    """An Arrow IPC file being written: the local file by its path (as before), a remote one as a
    stream that is completed when the writer closes."""

    def __init__(self, path: WorkPath, schema: pa.Schema) -> None:
        self._sink: pa.NativeFile | None = None
        if isinstance(path, RemotePath):
            filesystem, where = path.resolve()
            self._sink = filesystem.open_output_stream(where)
            self._writer = pa.ipc.new_file(self._sink, schema)
        else:
            self._writer = pa.ipc.new_file(str(path), schema)

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        self._writer.write(data)

    def write_table(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()
        if self._sink is not None:
            self._sink.close()


def list_files(folder: WorkPath) -> list[WorkPath]:
    """The files directly in ``folder``, sorted by name (none when it does not exist)."""
    if isinstance(folder, RemotePath):
        filesystem, where = folder.resolve()
        infos = filesystem.get_file_info(pafs.FileSelector(where, allow_not_found=True))
        return [folder / info.base_name for info in sorted(infos, key=lambda i: i.base_name)
                if info.type == pafs.FileType.File]
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def make_temp_dir(parent: WorkPath | None, prefix: str) -> WorkPath:
    """A new folder of this build's own under ``parent`` (None: the system's temporary folder); a
    remote one exists once a file is in it."""
    if isinstance(parent, RemotePath):
        return parent / f"{prefix}{uuid.uuid4().hex[:12]}"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def remove_tree(folder: WorkPath) -> None:
    """Delete a folder this build made and everything in it (missing is fine)."""
    if isinstance(folder, RemotePath):
        filesystem, where = folder.resolve()
        if filesystem.get_file_info(where).type != pafs.FileType.NotFound:
            filesystem.delete_dir(where)
        return
    shutil.rmtree(folder, ignore_errors=True)


def load_npz(path: WorkPath, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays ``names`` (default: all) of an ``.npz`` file; only those members are read (through
    ``open_input`` for a remote one)."""
    if isinstance(path, RemotePath):
        with open_input(path) as f, np.load(f) as saved:
            return {k: saved[k] for k in (saved.files if names is None else names)}
    with np.load(path) as saved:
        return {k: saved[k] for k in (saved.files if names is None else names)}


#: reading rows remotely: rows closer than this many bytes apart are fetched in one request (a
#: request costs about as much as a megabyte of transfer), and no request is larger than
#: ``SPAN_BYTES``, which bounds the memory a read holds at once
GAP_BYTES = 1 << 20
SPAN_BYTES = 64 << 20


def npy_rows(path: WorkPath, rows: np.ndarray | slice) -> np.ndarray:
    """Rows of a 2-D ``.npy`` array (C order): a sorted index array or a slice. Locally through a
    memory map (only the pages holding those rows are read); remotely by byte ranges: rows less than
    ``GAP_BYTES`` apart are read in one request of at most ``SPAN_BYTES`` (so a slice, or rows dense
    in the file, take few requests)."""
    if not isinstance(path, RemotePath):
        return np.asarray(np.load(path, mmap_mode="r")[rows])
    with open_input(path) as f:
        shape, dtype, offset = _npy_header(f)
        width = int(np.prod(shape[1:])) * dtype.itemsize
        if isinstance(rows, slice):
            lo, hi, _ = rows.indices(shape[0])
            data = f.read_at(max(0, hi - lo) * width, offset + lo * width)
            return np.frombuffer(data, dtype=dtype).reshape((max(0, hi - lo), *shape[1:])).copy()
        index = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(index), *shape[1:]), dtype=dtype)
        if not len(index):
            return out
        span_rows = max(1, SPAN_BYTES // width)
        breaks = np.flatnonzero((np.diff(index) > max(1, GAP_BYTES // width))
                                | (np.diff(index // span_rows) != 0)) + 1
        for start, end in zip(np.r_[0, breaks].tolist(), np.r_[breaks, len(index)].tolist(), strict=True):
            first, last = int(index[start]), int(index[end - 1]) + 1
            data = np.frombuffer(f.read_at((last - first) * width, offset + first * width), dtype=dtype)
            out[start:end] = data.reshape((last - first, *shape[1:]))[index[start:end] - first]
        return out


def _npy_header(f: Any) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of an ``.npy`` file (C order only, as ``np.save`` writes it)."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if fortran:
        raise ValueError("npy_rows reads C-ordered arrays only")
    return shape, dtype, f.tell()


def check_reachable(root: RemotePath) -> None:
    """Raise ``OSError`` unless the store answers and the bucket (the path's first part) exists, so
    a wrong endpoint, bucket or credentials stop the build before any work."""
    filesystem, base = root.resolve()
    bucket = base.split("/", 1)[0]
    if bucket and filesystem.get_file_info(bucket).type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"bucket {bucket!r} does not exist")
    filesystem.get_file_info(base)


class OwnFolder:
    """The build's own folder under the work folder the user named (``mixer-work-<random>``), and
    ``cleanup``, which deletes it and nothing else.

    In an object store, pyarrow keeps a deleted object's parent "folder" visible by writing an empty
    marker object for it (``prefix/``); so the folders above the build's own that did not exist when
    it started are deleted again at the end, deepest first, each only while nothing else is in it.
    Nothing that was there before the build is deleted. What pyarrow's API cannot avoid: the first
    folder above that did exist (unless it is the bucket) is left with such an empty marker when it
    had none (a folder that only existed through the files in it).
    """

    def __init__(self, root: WorkPath, prefix: str = "mixer-work-") -> None:
        self._local: tempfile.TemporaryDirectory[str] | None = None
        self._absent: list[str] = []
        if isinstance(root, RemotePath):
            filesystem, base = root.resolve()
            parts = base.split("/")
            for k in range(len(parts), 1, -1):  # never the bucket itself
                path = "/".join(parts[:k])
                if filesystem.get_file_info(path).type != pafs.FileType.NotFound:
                    break
                self._absent.append(path)
            self.path: WorkPath = make_temp_dir(root, prefix)
        else:
            self._local = tempfile.TemporaryDirectory(prefix=prefix, dir=root)
            self.path = Path(self._local.name)

    def cleanup(self) -> None:
        if self._local is not None:
            self._local.cleanup()
            return
        assert isinstance(self.path, RemotePath)
        remove_tree(self.path)
        filesystem, _ = self.path.resolve()
        for path in self._absent:
            info = filesystem.get_file_info(path)
            if info.type != pafs.FileType.Directory or \
                    filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
                break
            filesystem.delete_dir(path)
