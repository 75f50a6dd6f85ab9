"""The output folder is not a bin: mixer replaces only its own earlier outputs, unless told."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mixer.cli import app
from mixer.core.errors import MixerError
from mixer.core.outdir import (
    BUILD_MARKER,
    TRAIN_MARKER,
    check_output_dir,
    check_output_file,
    check_run_dir,
    is_html_report,
    lock_output,
    lock_path,
    recover_interrupted,
    staged_dir,
    unwritable,
)
from tests.conftest import flan_rows, write_jsonl

runner = CliRunner()


@pytest.fixture
def flan_recipe(make_recipe, tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "raw" / "flan.jsonl", flan_rows(20))
    return make_recipe([{"name": "flan_v2", "files": ["flan.jsonl"]}])


def test_build_refuses_a_non_empty_folder_that_is_not_a_mixer_build(flan_recipe: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("thesis\n")
    result = runner.invoke(app, ["build", str(flan_recipe), "--out", str(precious), "-q"])
    assert result.exit_code == 2
    assert "thesis.txt" in result.output and "--overwrite" in result.output
    assert (precious / "thesis.txt").read_text() == "thesis\n"
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.txt"]


def test_build_with_overwrite_replaces_a_foreign_folder(flan_recipe: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("thesis\n")
    result = runner.invoke(app, ["build", str(flan_recipe), "--out", str(precious), "-q", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert not (precious / "thesis.txt").exists()
    assert (precious / "card.json").exists() and (precious / BUILD_MARKER).exists()


def test_build_replaces_its_own_earlier_build_and_fills_an_empty_folder(flan_recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    for _ in range(2):  # first into the empty folder, then over the build it left
        result = runner.invoke(app, ["build", str(flan_recipe), "--out", str(out), "-q"])
        assert result.exit_code == 0, result.output
    assert json.loads((out / BUILD_MARKER).read_text())["tool"] == "mixer"


def test_a_rebuild_refuses_to_delete_a_users_file_left_inside_the_earlier_build(flan_recipe: Path,
                                                                                 tmp_path: Path) -> None:
    """The stamp lists the files the build wrote; a file the user put in the folder since (notes, an analysis
    in data/) stops the rebuild, named, instead of going with the old build. --overwrite still replaces all."""
    out = tmp_path / "out"
    assert runner.invoke(app, ["build", str(flan_recipe), "--out", str(out), "-q"]).exit_code == 0
    assert "card.json" in json.loads((out / BUILD_MARKER).read_text())["files"]
    (out / "notes.txt").write_text("mine\n")
    (out / "data" / "my-analysis.csv").write_text("a,b\n")
    result = runner.invoke(app, ["build", str(flan_recipe), "--out", str(out), "-q"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "data/my-analysis.csv, notes.txt" in text and "--overwrite" in text, text
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "data" / "my-analysis.csv").exists()
    (out / "notes.txt").unlink()
    (out / "data" / "my-analysis.csv").unlink()
    assert runner.invoke(app, ["build", str(flan_recipe), "--out", str(out), "-q"]).exit_code == 0
    (out / "notes.txt").write_text("mine\n")
    assert runner.invoke(app, ["build", str(flan_recipe), "--out", str(out), "-q", "--overwrite"]).exit_code == 0
    assert not (out / "notes.txt").exists()


def test_a_build_stamp_without_a_file_list_still_vouches_for_the_whole_folder(tmp_path: Path) -> None:
    """Builds made before the stamp listed its files are replaced as before."""
    out = tmp_path / "old-build"
    out.mkdir()
    (out / BUILD_MARKER).write_text(json.dumps({"tool": "mixer", "version": "0.1.0"}) + "\n")
    (out / "card.json").write_text("{}\n")
    check_output_dir(out, marker=BUILD_MARKER)


def test_build_refuses_a_file_where_the_output_folder_should_be(flan_recipe: Path, tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    result = runner.invoke(app, ["build", str(flan_recipe), "--out", str(target), "-q", "--overwrite"])
    assert result.exit_code == 2 and "not a folder" in result.output
    assert target.read_text() == "mine\n"


def test_card_html_refuses_to_overwrite_a_file_mixer_did_not_write(flan_recipe: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["build", str(flan_recipe), "-q"]).exit_code == 0
    page = tmp_path / "report.html"
    page.write_text("<html>my own page</html>\n")
    refused = runner.invoke(app, ["card", str(tmp_path / "out"), "--html", str(page)])
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert page.read_text() == "<html>my own page</html>\n"
    forced = runner.invoke(app, ["card", str(tmp_path / "out"), "--html", str(page), "--overwrite"])
    assert forced.exit_code == 0, forced.output
    assert is_html_report(page.read_bytes())
    again = runner.invoke(app, ["card", str(tmp_path / "out"), "--html", str(page)])  # its own report
    assert again.exit_code == 0, again.output


def test_check_output_dir_accepts_a_training_run_by_its_marker(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint-10").mkdir()
    with pytest.raises(MixerError, match="--overwrite-output-dir"):
        check_output_dir(run, marker=TRAIN_MARKER, option="--overwrite-output-dir")
    (run / TRAIN_MARKER).write_text("lr: 2e-5\n")
    check_output_dir(run, marker=TRAIN_MARKER)
    check_output_dir(tmp_path / "absent", marker=TRAIN_MARKER)


def test_a_training_run_refusing_a_users_folder_says_it_would_write_into_it_not_replace_it(tmp_path: Path) -> None:
    """The Trainer writes its files into --output-dir and leaves a user's other files there (as
    --overwrite-output-dir shows), so the refusal must not say the folder would be replaced as a whole."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    with pytest.raises(MixerError) as e:
        check_run_dir(mine, inputs=[])
    assert "write its files into it" in str(e.value) and "replaced as a whole" not in str(e.value)
    assert "--overwrite-output-dir" in str(e.value)


def test_check_output_file_refuses_a_folder_even_with_overwrite(tmp_path: Path) -> None:
    with pytest.raises(MixerError, match="is a folder"):
        check_output_file(tmp_path, is_ours=is_html_report, overwrite=True)


def test_second_build_into_a_locked_output_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with lock_output(out):
        with pytest.raises(MixerError) as e, lock_output(out):
            pass
    message = str(e.value)
    assert f"pid {os.getpid()}" in message and socket.gethostname() in message and "started" in message


def test_lock_left_by_a_killed_build_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = ("import sys, time; from mixer.core.outdir import lock_output\n"
            "with lock_output(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(MixerError, match=f"pid {holder.pid}"), lock_output(out):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert str(holder.pid) in lock_path(out).read_text()  # the dead holder's stamp is still there
    with lock_output(out):  # ... and the lock is free
        assert str(os.getpid()) in lock_path(out).read_text()
    assert not lock_path(out).exists()


def test_recovery_puts_back_the_previous_build_when_a_kill_hit_between_the_renames(tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = tmp_path / ".out.old-999999999"
    old.mkdir()
    (old / "card.json").write_text("{}\n")
    half = tmp_path / ".out.tmp-999999999"
    half.mkdir()
    (half / "data").mkdir()
    recover_interrupted(out)
    assert (out / "card.json").read_text() == "{}\n"
    assert not old.exists() and not half.exists()


def test_build_into_a_path_under_a_file_is_a_clear_error(flan_recipe: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    result = runner.invoke(app, ["build", str(flan_recipe), "--out", str(notes / "sub"), "-q"])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "a file is in the way" in result.output
    assert "Traceback" not in result.output and notes.read_text() == "mine\n"


def test_build_into_an_unwritable_folder_is_a_clear_error(flan_recipe: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only parent folder (simulated: tests run as root, which chmod does not stop)."""
    real_open = os.open

    def read_only(path, flags, *args):  # noqa: ANN001, ANN002
        if str(path).endswith(".lock") and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    result = runner.invoke(app, ["build", str(flan_recipe), "--out", str(tmp_path / "ro" / "out"), "-q"])
    assert result.exit_code == 2, result.output
    assert "Permission denied" in result.output and "--out" in result.output
    assert "Traceback" not in result.output


def test_staged_dir_puts_a_finished_folder_in_place_of_an_earlier_one(tmp_path: Path) -> None:
    out = tmp_path / "merged"
    out.mkdir()
    (out / "old.txt").write_text("earlier output\n")
    with staged_dir(out) as staging:
        assert staging.parent == tmp_path and staging != out and not (staging / "old.txt").exists()
        (staging / "model.bin").write_text("new\n")
        assert (out / "old.txt").exists()  # the earlier output stays until the new one is whole
    assert sorted(p.name for p in out.iterdir()) == ["model.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]  # no staging folder left


def test_staged_dir_leaves_nothing_and_keeps_the_earlier_output_when_writing_fails(tmp_path: Path) -> None:
    out = tmp_path / "pruned"
    out.mkdir()
    (out / "old.txt").write_text("earlier output\n")
    with pytest.raises(RuntimeError, match="disk full"), staged_dir(out) as staging:
        (staging / "half.bin").write_text("half\n")
        raise RuntimeError("disk full")
    assert (out / "old.txt").read_text() == "earlier output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned"]


def test_staged_dir_output_gets_the_mode_of_any_new_folder_not_mkdtemps_private_one(tmp_path: Path) -> None:
    """merge-models, prune and tokenize write through staged_dir; their folder must be as readable as one mkdir
    makes under the umask (a teammate reads a merged model), not 0700."""
    plain = tmp_path / "plain"
    plain.mkdir()
    with staged_dir(tmp_path / "staged") as staging:
        (staging / "f.txt").write_text("x")
    assert (tmp_path / "staged").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_unwritable_probes_without_leaving_anything_and_creates_nothing_unless_asked(tmp_path: Path) -> None:
    (tmp_path / "kept.txt").write_text("x\n")
    assert unwritable(tmp_path) is None
    assert unwritable(tmp_path / "new" / "run") is None  # judged by tmp_path, the nearest existing parent
    assert sorted(e.name for e in tmp_path.iterdir()) == ["kept.txt"]
    assert unwritable(tmp_path / "cache" / "mixer", create=True) is None
    assert sorted(e.name for e in tmp_path.iterdir()) == ["cache", "kept.txt"]
    assert list((tmp_path / "cache" / "mixer").iterdir()) == []


def test_unwritable_names_a_file_where_a_folder_is_needed(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x\n")
    assert unwritable(tmp_path / "a-file" / "run") == f"{tmp_path / 'a-file'} is not a folder"
    assert unwritable(tmp_path / "a-file" / "cache", create=True) == "Not a directory"
    assert (tmp_path / "a-file").read_text() == "x\n"


def test_unwritable_gives_the_systems_reason_when_no_file_can_be_created(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only folder (simulated: tests run as root, which chmod does not stop)."""
    import mixer.core.outdir

    def read_only(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(mixer.core.outdir.tempfile, "mkstemp", read_only)
    assert unwritable(tmp_path / "run") == "Permission denied"
    assert unwritable(tmp_path / "cache", create=True) == "Permission denied"
