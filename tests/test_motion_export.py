"""MP4 and GIF export: every frame, readable, written atomically."""

import imageio.v2 as imageio
import pytest
from PIL import Image

from storydiffusion.motion.export import ExportError, write_gif, write_mp4


def colour_frames(count: int, size=(64, 48)) -> list[Image.Image]:
    return [Image.new("RGB", size, (30 * i % 256, 255 - 20 * i, 90)) for i in range(count)]


def test_mp4_reads_back_with_every_frame(tmp_path):
    path = write_mp4(colour_frames(8), tmp_path / "clip.mp4", fps=8)
    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        frames = [frame for frame in reader]
        assert reader.get_meta_data()["codec"] == "h264"
    finally:
        reader.close()
    assert len(frames) == 8 and frames[0].shape == (48, 64, 3)
    assert abs(int(frames[3][10, 10, 1]) - (255 - 60)) < 12  # the right frame, through yuv420p
    odd = write_mp4(colour_frames(3, size=(63, 47)), tmp_path / "odd.mp4", fps=4)
    reader = imageio.get_reader(str(odd), format="FFMPEG")
    try:
        assert next(iter(reader)).shape == (48, 64, 3)  # padded to even sizes for yuv420p
    finally:
        reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "odd.mp4"]  # no temporary files left


def test_gif_loops_with_every_frame(tmp_path):
    path = write_gif(colour_frames(6), tmp_path / "clip.gif", fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 6 and gif.size == (64, 48)
        assert gif.info.get("loop") == 0 and gif.info.get("duration") == 100
    assert [p.name for p in tmp_path.iterdir()] == ["clip.gif"]


def test_failed_export_leaves_nothing(tmp_path):
    frames = colour_frames(2) + colour_frames(1, size=(32, 32))
    with pytest.raises(ExportError, match="differ in size"):
        write_mp4(frames, tmp_path / "bad.mp4", fps=8)
    with pytest.raises(ExportError):
        write_gif([], tmp_path / "empty.gif", fps=8)
    assert list(tmp_path.iterdir()) == []
