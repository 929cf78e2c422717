"""The shared window scheduler (`magicpose.pipelines.windows`) and MagicPose's windows: coverage, exact blending of
agreeing windows, windows equal to frame batches without a motion module, one appearance pass per step."""

from __future__ import annotations

import pytest
import torch

from magicpose.pipelines.windows import blend_windows, context_windows, window_weights

from .conftest import random_image, stick_pose
from .test_model import CallCounter


@pytest.mark.parametrize("frames", [1, 5, 8, 13, 32])
@pytest.mark.parametrize("length,overlap", [(4, 0), (4, 2), (8, 4), (16, 4), (5, 4)])
def test_windows_cover_every_frame_with_the_requested_overlap(frames, length, overlap):
    windows = context_windows(frames, length, overlap)
    covered = sorted({i for w in windows for i in w})
    assert covered == list(range(frames))
    assert all(len(w) == min(length, frames) for w in windows)
    assert windows[0].start == 0 and windows[-1].stop == frames
    for a, b in zip(windows, windows[1:]):
        assert a.stop - b.start >= overlap  # consecutive windows share at least `overlap` frames
    assert (window_weights(length, overlap) > 0).all()


def test_bad_windows_are_refused():
    with pytest.raises(ValueError):
        context_windows(10, 4, 4)
    with pytest.raises(ValueError):
        context_windows(10, 0, 0)


@pytest.mark.parametrize("dim", [0, 2])
@pytest.mark.parametrize("length,overlap", [(3, 1), (4, 2), (5, 4), (2, 0)])
def test_windows_that_agree_blend_back_to_exactly_their_prediction(dim, length, overlap):
    truth = torch.randn(2, 3, 11, 4, generator=torch.Generator().manual_seed(0)).movedim(2, dim).contiguous()
    seen: list[range] = []

    def predict(window: range) -> torch.Tensor:
        seen.append(window)
        return truth.narrow(dim, window.start, len(window)) * 1.0  # a copy, as a network's output would be

    blended = blend_windows(predict, 11, length, overlap, dim)
    assert len(seen) == len(context_windows(11, length, overlap)) > 1
    assert blended.dtype == truth.dtype and torch.equal(blended, truth)


def test_a_window_as_long_as_the_clip_is_one_untouched_pass():
    prediction = torch.randn(7, 2)
    calls: list[range] = []
    out = blend_windows(lambda w: calls.append(w) or prediction, 7, 7, 4, dim=0)
    assert out is prediction and calls == [range(7)]


def test_overlapping_windows_are_weighted_towards_their_middle():
    # each window predicts its own index: a frame's blend leans to the window where it is further from the edge
    windows = context_windows(6, 4, 2)  # [0..3], [2..5]
    out = blend_windows(lambda w: torch.full((len(w),), float(windows.index(w))), 6, 4, 2, dim=0)
    assert out.tolist()[:2] == [0.0, 0.0] and out.tolist()[4:] == [1.0, 1.0]
    assert 0.0 < out[2] < 0.5 < out[3] < 1.0


# ----- MagicPose ------------------------------------------------------------------------------------------------
POSES = [stick_pose(i) for i in range(6)]


def _latents(pipe, **kwargs):
    kwargs.setdefault("num_inference_steps", 2)
    return pipe(random_image(1), POSES, generator=torch.Generator().manual_seed(0), output_type="latent",
                **kwargs).frames


@pytest.mark.parametrize("mode", ["controlnet_important", "balance"])
def test_magicpose_windows_equal_frame_batches_without_a_motion_module(tiny_pipe, mode):
    # every pass has 3 frames either way (CPU kernels round differently for other batch sizes, ~1e-6 relative)
    batched = _latents(tiny_pipe, guidance_mode=mode, frames_per_batch=3, num_inference_steps=1)
    for length, overlap in [(3, 1), (3, 0)]:
        windowed = _latents(tiny_pipe, guidance_mode=mode, frames_per_batch=3, context_length=length,
                            context_overlap=overlap, num_inference_steps=1)
        assert torch.equal(windowed, batched)
    # the poses make the frames differ (so a window reading the wrong poses would fail the equality)
    assert (batched[0, 0] - batched[0, 1]).abs().max() > 3e-5  # tiny random weights: the pose effect is small


def test_magicpose_window_as_long_as_the_clip_is_one_pass(tiny_pipe):
    controlnet = CallCounter(tiny_pipe.controlnet)
    one_window = _latents(tiny_pipe, context_length=6, shared_noise=False)
    assert controlnet.batches == [6, 6]  # one pass of all frames per step
    assert torch.equal(one_window, _latents(tiny_pipe, frames_per_batch=6, shared_noise=False))


def test_appearance_unet_runs_once_per_step_whatever_the_number_of_windows(tiny_pipe):
    appearance, controlnet = CallCounter(tiny_pipe.appearance_unet), CallCounter(tiny_pipe.controlnet)
    _latents(tiny_pipe, num_inference_steps=3, context_length=2, context_overlap=1)  # 5 windows
    assert appearance.batches == [1, 1, 1]
    assert controlnet.batches == [2] * 5 * 3  # one conditional pass per window and step


def test_magicpose_refuses_an_overlap_as_long_as_the_window(tiny_pipe):
    with pytest.raises(ValueError, match="context_overlap < context_length"):
        _latents(tiny_pipe, context_length=3, context_overlap=3)


@pytest.mark.parametrize("command", ["animate", "infer-tiktok"])
def test_both_magicpose_sampling_commands_set_the_window_keys(command):
    from magicpose.cli import build_parser
    from magicpose.commands.outputs import INFERENCE_FLAGS, flag_overrides

    required = {"animate": ["--reference", "r.png", "--poses", "p", "--out", "o"],
                "infer-tiktok": ["--data", "d", "--out", "o"]}[command]
    args = build_parser().parse_args([command, "-c", "x.yaml", *required, "--context-length", "16",
                                      "--context-overlap", "2"])
    overrides = flag_overrides(args, INFERENCE_FLAGS)
    assert {"inference.context_length=16", "inference.context_overlap=2"} <= set(overrides)
