from videnhance.demo import DEMO_CLIPS, camera_path, make_demo_clips
from videnhance.io import probe


def test_camera_never_upsamples_and_reaches_one_to_one():
    boxes = camera_path(100, (600, 400), (300, 200), (0.45, 0.42))
    widths = [x1 - x0 for x0, _, x1, _ in boxes]
    assert min(widths) >= 300 - 1e-6  # at the closest zoom one frame pixel is one photo pixel
    assert abs(min(widths) - 300) < 1 and abs(widths[0] - 600) < 1e-6
    assert all(0 <= x0 and x1 <= 600 + 1e-6 and 0 <= y0 and y1 <= 400 + 1e-6 for x0, y0, x1, y1 in boxes)


def test_demo_clips_have_the_promised_shape(tmp_path):
    paths = make_demo_clips(tmp_path, seconds=0.4)
    for clip, path in zip(DEMO_CLIPS, paths, strict=True):
        meta = probe(path)
        assert (meta.width, meta.height, meta.frames) == (*clip.size, 10)
        assert bool(meta.audio) == clip.audio
