"""Output paths that are never a bin: mixer replaces a folder or file only when it is its own.

A build, an HTML report, a download or a training run may take the place of an earlier one of the
same kind, recognised by a marker the earlier run wrote (``.mixer-build`` in a build folder,
``mixer_train_config.yaml`` in a training run, a generator tag in an HTML report). Any other
existing, non-empty folder or existing file is a user's, and replacing it needs ``--overwrite``:
a typo in ``--out`` must never cost someone their thesis.

Builds into one output folder also take a lock (``lock_output``) so that two of them never race
for the same name; the lock is an ``flock`` on a sibling file, released by the kernel when its
holder dies, so a killed build never leaves a lock that blocks the next one.

This module imports nothing from mixer but ``mixer.core.errors``, so any command can use it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mixer.core.errors import MixerError

#: the stamp ``mixer build`` writes into every output folder
BUILD_MARKER = ".mixer-build"
#: the file ``mixer train`` writes into every run folder
TRAIN_MARKER = "mixer_train_config.yaml"
#: the tag ``mixer card --html`` writes into every report's head
HTML_MARKER = '<meta name="generator" content="mixer">'


def check_output_dir(path: Path | str, *, marker: str | Sequence[str], overwrite: bool = False,
                     option: str = "--overwrite", what: str = "output folder", replaced: bool = True) -> None:
    """Raise ``MixerError`` unless ``path`` may be replaced by a new output.

    Replaceable: a path that does not exist, an empty folder, a folder holding ``marker`` (one of
    them, when several are given: an earlier output of the same kind), or anything at all when
    ``overwrite`` is set. A file where a folder is expected is refused even with ``overwrite``.
    ``option`` names the flag that overrides, for the message; ``replaced``: whether the command replaces
    the folder as a whole (a build) or writes its files into it (a training run), for the message.
    """
    p = Path(path)
    markers = (marker,) if isinstance(marker, str) else tuple(marker)
    if not p.exists() and not p.is_symlink():
        return
    if not p.is_dir():
        raise MixerError(f"{p}: the {what} exists and is not a folder; choose another path")
    if overwrite:
        return
    try:
        entries = sorted(e.name for e in os.scandir(p))
    except OSError as e:
        raise MixerError(f"{p}: cannot look into the {what}: {e.strerror}") from None
    own = [m for m in markers if (p / m).is_file()]
    if own:
        foreign = _not_written_by(p, own[0])
        if foreign:
            shown = ", ".join(foreign[:5]) + (f", ... ({len(foreign)} files)" if len(foreign) > 5 else "")
            raise MixerError(f"{p}: the {what} is an earlier mixer output but also holds files it did not write "
                             f"({shown}); it would be replaced as a whole. Move them out, choose another folder, "
                             f"or pass {option} to replace it")
        return
    if not entries:
        return
    shown = ", ".join(entries[:5]) + (f", ... ({len(entries)} entries)" if len(entries) > 5 else "")
    fate = ("it would be replaced as a whole. Choose another folder, or pass {option} to replace it" if replaced
            else "the run would write its files into it. Choose another folder, or pass {option} to write into it")
    raise MixerError(f"{p}: the {what} exists, is not empty ({shown}) and is not an earlier mixer output "
                     f"(no {' or '.join(markers)} in it); " + fate.format(option=option))


def check_not_an_input(out: Path | str, inputs: Iterable[tuple[str, Path | str]], *,
                       option: str = "--out") -> None:
    """Raise ``MixerError`` when the output folder ``out`` is, contains or lies inside an input.

    ``inputs``: (what it is, path) pairs: the files and folders a command reads from. An output
    folder is replaced as a whole or written into, so one that holds an input could delete or
    overwrite it, whatever ``--overwrite`` says; this is never overridable. Paths are compared resolved (symlinks
    followed), so a link or a ``..`` does not hide the overlap.
    """
    target = Path(out).expanduser().resolve()
    for what, path in inputs:
        p = Path(path).expanduser().resolve()
        if target == p:
            how = "is"
        elif target in p.parents:
            how = "contains"
        elif p in target.parents:
            how = "lies inside"
        else:
            continue
        raise MixerError(f"{option} {out}: the output folder {how} {what} {path}; writing the output there "
                         f"could delete or overwrite the input (no overwrite option changes this). Choose an "
                         f"output folder outside every input")


def check_run_dir(output_dir: Path | str, *, inputs: Iterable[tuple[str, Path | str | None]],
                  overwrite: bool = False, resuming: bool = False, what: str = "run folder") -> None:
    """Raise ``MixerError`` unless a training command may write its run into ``output_dir``.

    Called once, before any tokenising or weight loading. ``inputs``: (option, path) of what the
    run reads (``--model``, ``--data``, a tokenizer...; ``None`` or a path not on this machine, such
    as a hub id, is skipped): the run folder may be, hold or lie inside none of them, whatever the
    flags. An earlier run (one holding ``TRAIN_MARKER``) is replaced only with ``overwrite``
    (``--overwrite-output-dir``, as the Hugging Face Trainer and LLaMA-Factory ask) or continued
    when ``resuming`` (``resume_from_checkpoint`` set); any other non-empty folder needs ``overwrite``.
    """
    local = [(f"{option}", Path(p)) for option, p in inputs if p and Path(p).expanduser().exists()]
    check_not_an_input(output_dir, local, option="--output-dir")
    out = Path(output_dir)
    if not (overwrite or resuming) and (out / TRAIN_MARKER).is_file():
        raise MixerError(f"{out}: the {what} holds an earlier run ({TRAIN_MARKER}); pass --overwrite-output-dir "
                         f"to replace it, --set resume_from_checkpoint=last to continue it, or choose another "
                         f"--output-dir")
    check_output_dir(out, marker=TRAIN_MARKER, overwrite=overwrite, option="--overwrite-output-dir", what=what,
                     replaced=False)  # the Trainer writes into the folder; a user's other files stay


def check_output_file(path: Path | str, *, is_ours: Callable[[bytes], bool], overwrite: bool = False,
                      option: str = "--overwrite", what: str = "output file") -> None:
    """Raise ``MixerError`` unless the file ``path`` may be written: absent, ``overwrite`` set, or an
    earlier output of ours (``is_ours`` of its first 64 KiB is true). A folder is always refused."""
    p = Path(path)
    if not p.exists():
        return
    if p.is_dir():
        raise MixerError(f"{p}: the {what} is a folder; give a file path")
    if overwrite:
        return
    try:
        with open(p, "rb") as f:
            head = f.read(1 << 16)
    except OSError as e:
        raise MixerError(f"{p}: cannot read the existing {what}: {e.strerror}") from None
    if not is_ours(head):
        raise MixerError(f"{p}: the {what} exists and was not written by mixer; choose another path, "
                         f"or pass {option} to replace it")


def is_html_report(head: bytes) -> bool:
    """Whether a file's head is a report ``mixer card --html`` wrote."""
    return HTML_MARKER.encode() in head


def _files_under(folder: Path) -> list[str]:
    """Every file below ``folder``, as sorted POSIX paths relative to it."""
    return sorted(f.relative_to(folder).as_posix() for f in folder.rglob("*") if not f.is_dir())


def _not_written_by(folder: Path, marker: str) -> list[str]:
    """Files in an earlier output that its stamp does not list: a user's notes dropped into ``out/my-mix``,
    which a rebuild would delete with the folder. A stamp without a ``files`` list (another command's
    marker, or a build from before the list) vouches for everything, as before."""
    try:
        info = json.loads((folder / marker).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    listed = info.get("files") if isinstance(info, dict) else None
    if not isinstance(listed, list):
        return []
    known = {*map(str, listed), marker}
    return [f for f in _files_under(folder) if f not in known]


def write_build_marker(folder: Path, info: dict[str, object]) -> None:
    """Stamp a finished build folder as mixer's own (``info``: what the stamp records, no clock), with the
    list of files the build wrote, so that a later build refuses to delete any other file found there."""
    stamp = {"tool": "mixer", **info, "files": _files_under(folder)}
    (folder / BUILD_MARKER).write_text(json.dumps(stamp, sort_keys=True) + "\n", encoding="utf-8")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_path(out: Path) -> Path:
    """The lock file of output folder ``out``: a hidden sibling, as ``out`` itself gets replaced."""
    out = Path(out).resolve()
    return out.parent / f".{out.name}.lock"


@contextmanager
def lock_output(out: Path | str) -> Iterator[None]:
    """Hold the output folder ``out`` for one build; a second build fails at once naming the holder.

    The lock is ``flock`` on ``.<name>.lock`` beside ``out``: the kernel drops it when the holder
    exits or is killed, so a lock file left by a dead build is simply locked again (taken over). The
    file records the holder's pid, host and start time for the message, and is removed on release;
    a build that locked a file just removed by its holder notices (another inode at the path) and
    locks the new one instead.
    """
    path = lock_path(Path(out))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MixerError(f"{out}: cannot create the folder the output goes in ({path.parent}): "
                         f"{_why(e)}") from None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise MixerError(f"{out}: cannot write beside the output folder (its lock file {path}): "
                             f"{_why(e)}; choose another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise MixerError(f"{out}: another build is writing this output folder ({holder}); wait for it "
                             f"to finish or choose another --out") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        stamp = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(stamp) + "\n").encode(), 0)
        recover_interrupted(Path(out))
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)  # releases the flock


def unwritable(folder: Path | str, *, create: bool = False) -> str | None:
    """Why a file cannot be written in ``folder``, or None when it can: the OS's reason (``Permission
    denied``, ``Read-only file system``...), found by creating a probe file and removing it at once.

    Asked before the work starts, so that a run fails (or goes without its cache) in its first second
    rather than at its first write. With ``create`` the folder is made first (a cache folder is mixer's
    own); without, nothing is created: a folder that does not exist yet is judged by its nearest
    existing parent, the one its creation would write into.
    """
    probe_dir = Path(folder)
    try:
        if create:
            probe_dir.mkdir(parents=True, exist_ok=True)
        else:
            while not probe_dir.exists() and probe_dir.parent != probe_dir:
                probe_dir = probe_dir.parent
            if not probe_dir.is_dir():
                return f"{probe_dir} is not a folder"
        fd, probe = tempfile.mkstemp(prefix=".mixer-probe-", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return e.strerror or str(e)
    return None


def _why(e: OSError) -> str:
    """An OSError as a user reads it: a file in the way of a folder is named as such."""
    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        return "a file is in the way where a folder is needed"
    return e.strerror or str(e)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def recover_interrupted(out: Path) -> None:
    """Undo what a killed build left beside ``out`` (call with the lock held).

    ``mixer.stages.write.staging_dir`` writes ``.<name>.tmp-<pid>`` and swaps it in through
    ``.<name>.old-<pid>``; a kill between the two renames leaves ``out`` missing and the previous
    build under the ``.old`` name, which is put back. Staging folders of dead builds are removed.
    """
    out = Path(out).resolve()
    if not out.parent.is_dir():
        return
    prefix = f".{out.name}."
    for entry in sorted(out.parent.iterdir()):
        name = entry.name
        if not name.startswith(prefix):
            continue
        kind, _, pid = name[len(prefix):].partition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue  # an older mixer without the lock may still be writing it
        if kind == "old" and not out.exists():
            os.replace(entry, out)
        else:
            shutil.rmtree(entry, ignore_errors=True)


@contextmanager
def staged_dir(final: Path | str) -> Iterator[Path]:
    """Write a folder output in a staging sibling of ``final`` and put it in place only once it is whole.

    Yields a new hidden folder beside ``final`` (same file system, so the rename is atomic). When the block
    ends without an exception, an existing ``final`` is removed (the caller has checked with
    :func:`check_output_dir` that it is empty or an earlier output of ours) and the staging folder is renamed
    to ``final``; when it raises (a failed merge, Ctrl-C), the staging folder is removed and ``final`` is left
    as it was, so a failed command leaves nothing half-written behind.
    """
    out = Path(final)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        # mkdtemp makes the folder private (0700); the output it becomes gets the mode any new folder gets
        # under the umask (0755 under 022), so a merged or pruned model is readable as a build folder is
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(staging, 0o777 & ~mask)
        yield staging
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
