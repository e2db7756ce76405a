"""The course's pictures: each writes one PNG through the atomic writer, draws what it is
given, and leaves an existing file whole when drawing fails."""
import numpy as np
import pytest

from tinymod.reports import pictures

PNG = b"\x89PNG\r\n\x1a\n"


def test_each_picture_writes_one_png_and_nothing_else(tmp_path):
    c = np.arange(11)
    votes = {f"k = {k}": np.cos(2 * np.pi * k * (13 - c) / 11) for k in (1, 3)}
    totals = [("mean", np.mean(list(votes.values()), axis=0)), ("first", votes["k = 1"])]
    spectra = {"wave": np.eye(6)[2], "flat": np.zeros(6)}       # an all-zero table draws as zeros
    frames = [(0, np.random.default_rng(0).standard_normal((11, 2)), 3.0), (10, np.zeros((11, 2)), 0.0)]
    drawn = [pictures.phase_addition(11, 3, 4, 9, votes, totals[:1], tmp_path / "a.png"),
             pictures.votes(votes, 2, totals, tmp_path / "b.png", "title"),
             pictures.spectra(spectra, [2], tmp_path / "c.png"),
             pictures.clock_frames(frames, 3, tmp_path / "d.png"),
             pictures.error_by_step([1e-6, 1e-4, 1e-2], {"exact at one step": [1e-9, 0.0, 1e-5]}, tmp_path / "e.png")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    assert all(path.read_bytes().startswith(PNG) for path in drawn)


def test_a_picture_that_cannot_be_drawn_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "frames.png"
    path.write_bytes(b"an earlier figure")
    with pytest.raises(ValueError):
        pictures.clock_frames([], 3, path)                        # no snapshot: no panel to draw
    assert path.read_bytes() == b"an earlier figure"
    assert [p.name for p in tmp_path.iterdir()] == ["frames.png"]
