"""The paper's transition metrics on inputs whose values are known by hand."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from storydiffusion.motion.metrics import (
    MetricError,
    PerceptualDistance,
    clipsim_first,
    clipsim_frames,
    frames_to_tensor,
    lpips_first,
    lpips_frames,
    tiny_lpips,
    transition_metrics,
)


class PixelLayer(torch.nn.Module):
    """The image itself as the only feature layer: LPIPS then compares colour directions per pixel."""

    def forward(self, x):
        return [x]


class MeanColourEncoder:
    """A stand-in CLIP encoder whose embedding is the mean RGB colour."""

    def encode_pooled(self, images):
        return torch.tensor(np.stack([np.asarray(i, dtype=np.float32).mean(axis=(0, 1)) for i in images]))


RED, YELLOW, GREEN = (255, 0, 0), (255, 255, 0), (0, 255, 0)


def solid(colour, size=(16, 16)) -> Image.Image:
    return Image.new("RGB", size, colour)


def texture(seed: int, size: int = 32) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def blend(a: Image.Image, b: Image.Image, t: float) -> Image.Image:
    return Image.blend(a, b, t)


def test_three_frames_by_hand():
    """red (1,-1,-1), yellow (1,1,-1), green (-1,1,-1) in [-1, 1]; all of norm sqrt(3).

    d(r, y) = |(0,-2,0)|^2 / 3 = 4/3, d(y, g) = 4/3, d(r, g) = |(2,-2,0)|^2 / 3 = 8/3.
    LPIPS-first = (d(r,y) + d(r,g)) / 2 = 2; LPIPS-frames = (d(r,y) + d(y,g)) / 2 = 4/3.
    """
    frames = [solid(RED), solid(YELLOW), solid(GREEN)]
    net = PerceptualDistance(PixelLayer())
    assert lpips_first(frames, net) == pytest.approx(2.0, abs=1e-5)
    assert lpips_frames(frames, net) == pytest.approx(4 / 3, abs=1e-5)
    # Channel weights: only red differences count -> d(r,y) = 0, d(y,g) = d(r,g) = 4/3.
    red_only = PerceptualDistance(PixelLayer(), weights=[torch.tensor([1.0, 0.0, 0.0])])
    assert lpips_first(frames, red_only) == pytest.approx(2 / 3, abs=1e-5)
    assert lpips_frames(frames, red_only) == pytest.approx(2 / 3, abs=1e-5)
    # CLIPSIM on mean colours: cos(r, y) = cos(y, g) = 1/sqrt(2), cos(r, g) = 0.
    encoder = MeanColourEncoder()
    assert clipsim_first(frames, encoder) == pytest.approx(0.5 / math.sqrt(2), abs=1e-6)
    assert clipsim_frames(frames, encoder) == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert transition_metrics(frames, net, encoder) == pytest.approx(
        {
            "LPIPS-first": 2.0,
            "LPIPS-frames": 4 / 3,
            "CLIPSIM-first": 0.5 / math.sqrt(2),
            "CLIPSIM-frames": 1 / math.sqrt(2),
        },
        abs=1e-5,
    )


def test_identical_frames():
    frames = [texture(1)] * 4
    assert lpips_first(frames, tiny_lpips()) == pytest.approx(0.0, abs=1e-7)
    assert lpips_frames(frames, tiny_lpips()) == pytest.approx(0.0, abs=1e-7)
    assert clipsim_first(frames, MeanColourEncoder()) == pytest.approx(1.0, abs=1e-6)
    assert clipsim_frames(frames, MeanColourEncoder()) == pytest.approx(1.0, abs=1e-6)


def test_clipsim_with_the_tiny_clip_encoder():
    from storydiffusion.motion.encoder import ClipImageEncoder

    encoder = ClipImageEncoder.tiny()
    assert clipsim_first([texture(2)] * 3, encoder) == pytest.approx(1.0, abs=1e-5)
    different = [texture(2), texture(3), texture(4)]
    assert -1.0 <= clipsim_frames(different, encoder) < 1.0 - 1e-4


def test_distance_grows_with_the_change_and_is_symmetric():
    start, end = texture(5), texture(6)
    net = tiny_lpips()
    distances = [lpips_first([start, blend(start, end, t)], net) for t in (0.1, 0.3, 0.6, 1.0)]
    assert distances == sorted(distances) and distances[0] > 0
    assert lpips_first([start, end], net) == pytest.approx(lpips_first([end, start], net), rel=1e-5)
    frames = [blend(start, end, t) for t in (0.0, 0.2, 0.5, 1.0)]
    assert lpips_frames(frames, net) == pytest.approx(lpips_frames(frames[::-1], net), rel=1e-5)
    similarities = [
        clipsim_first([solid((200, 40, 40)), solid((200, 40 + s, 40))], MeanColourEncoder()) for s in (20, 80, 160)
    ]
    assert similarities == sorted(similarities, reverse=True)


def test_first_and_adjacent_differ_on_a_steady_motion():
    """A steady drift: adjacent frames stay close while the first frame grows ever farther."""
    start, end = texture(7), texture(8)
    frames = [blend(start, end, t) for t in np.linspace(0, 1, 6)]
    net = tiny_lpips()
    assert lpips_first(frames, net) > lpips_frames(frames, net)


def test_bad_inputs():
    with pytest.raises(MetricError, match="at least 2"):
        lpips_first([solid(RED)], tiny_lpips())
    with pytest.raises(MetricError, match="at least 2"):
        clipsim_frames([solid(RED)], MeanColourEncoder())
    with pytest.raises(MetricError, match="same size"):
        lpips_frames([solid(RED), solid(RED, (8, 8))], tiny_lpips())
    with pytest.raises(MetricError, match="non-negative"):
        PerceptualDistance(PixelLayer(), weights=[torch.tensor([1.0, -1.0, 0.0])])
    assert frames_to_tensor([solid(RED)]).tolist()[0][0][0][0] == 1.0


def test_published_lpips_needs_its_package_or_weights():
    from storydiffusion.motion.metrics import lpips_network

    try:
        import lpips  # noqa: F401
    except ImportError:
        with pytest.raises(MetricError, match="pip install lpips"):
            lpips_network()
    else:
        pytest.skip("lpips is installed; its weights may need the internet")
