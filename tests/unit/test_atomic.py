"""vlrl.atomic: a target is written whole or left as it was."""

from __future__ import annotations

import pytest

from vlrl.atomic import atomic_dir, atomic_file, partial_path, replace_symlink, write_text_atomic


def test_a_failed_file_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_file(path) as f:
        f.write("new, half")
        raise RuntimeError("killed")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    write_text_atomic(path, "new\n")
    assert path.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_a_directory_appears_whole_and_never_over_another(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("killed")
    assert not out.exists() and not partial_path(out).exists()
    with atomic_dir(out) as tmp:
        assert not out.exists()  # nothing at the target while it is written
        (tmp / "config.json").write_text("{}")
    assert [p.name for p in out.iterdir()] == ["config.json"]
    with pytest.raises(FileExistsError, match="not empty"), atomic_dir(out):
        pass
    with atomic_dir(out, replace=True) as tmp:
        (tmp / "weights").write_text("w")
    assert [p.name for p in out.iterdir()] == ["weights"]  # replaced whole, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_replace_symlink_moves_an_existing_link(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    replace_symlink(tmp_path / "final", "a")
    replace_symlink(tmp_path / "final", "b")
    assert (tmp_path / "final").resolve() == (tmp_path / "b").resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "final"]
