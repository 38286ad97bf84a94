import os
import stat

import pytest

from utils.atomic_file import atomic_write, remove_stale_temporaries

# Leftovers of writes killed midway, named as atomic_write (and tempfile.mkstemp, which it used before) names them.
STALE = [".chkpnt100.pth.k3v_9qzx.tmp", ".chkpnt100.pth.0f3a9c21.tmp"]
# Files that are not atomic_write's temporaries, or not those of chkpnt100.pth.
OTHERS = [".chkpnt200.pth.0f3a9c21.tmp", ".chkpnt100.pth.tmp", "chkpnt100.pth.0f3a9c21.tmp", "notes.tmp",
          ".chkpnt100.pth.toolongname.tmp"]


def make_files(folder, names):
    for name in names:
        (folder / name).write_bytes(b"partial")


def test_a_complete_write_removes_the_temporaries_of_killed_writes_of_that_file(tmp_path):
    make_files(tmp_path, STALE + OTHERS)
    with atomic_write(tmp_path / "chkpnt100.pth") as file:
        file.write(b"state")
    assert sorted(os.listdir(tmp_path)) == sorted(OTHERS + ["chkpnt100.pth"])
    assert (tmp_path / "chkpnt100.pth").read_bytes() == b"state"


def test_a_failed_write_keeps_the_previous_file_and_leaves_nothing(tmp_path):
    (tmp_path / "results.json").write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "results.json", "w") as file:
            file.write("partial")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == ["results.json"]
    assert (tmp_path / "results.json").read_text() == "previous"


def test_remove_stale_temporaries_keeps_other_files(tmp_path):
    make_files(tmp_path, STALE + [".point_cloud.ply.abcdefgh.tmp", "notes.tmp", "point_cloud.ply"])
    remove_stale_temporaries(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["notes.tmp", "point_cloud.ply"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002], ids=oct)
def test_written_files_get_the_permissions_of_any_new_file(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with open(tmp_path / "ordinary", "w") as file:
            file.write("text")
        with atomic_write(tmp_path / "atomic", "w") as file:
            file.write("text")
    finally:
        os.umask(previous)
    ordinary = stat.S_IMODE(os.stat(tmp_path / "ordinary").st_mode)
    assert ordinary == 0o666 & ~umask
    assert stat.S_IMODE(os.stat(tmp_path / "atomic").st_mode) == ordinary
