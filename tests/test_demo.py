"""The web demo without a browser: upload checks, every control reaching the pipeline, progress, cancel, one request
at a time, errors as one line, and `magicpose demo`'s arguments (the page itself: tests/test_demo_browser.py)."""

from __future__ import annotations

import inspect
import json
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from magicpose.cli import build_parser, main
from magicpose.config import FypConfig, MagicPoseConfig, load_config
from magicpose.demo.sessions import (
    AnimateSession,
    AnimateSettings,
    Cancelled,
    FypSession,
    Limits,
)
from magicpose.demo.uploads import load_reference, pose_source, raw_video
from magicpose.errors import UserError
from magicpose.media import write_video

from .conftest import (
    REPO,
    TINY_CONFIG,
    random_image,
    require_pose_env,
    stick_pose,
    tiny_spec,
    wake_controlnet,
)

gr = pytest.importorskip("gradio")
from magicpose.demo import app as demo_app  # noqa: E402 - needs gradio

FYP_TINY = REPO / "configs/followyourpose/tiny.yaml"
FAST = ["device=cpu", "inference.steps=2", "inference.size=32"]


# ----- inputs --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A non-square reference (crop and pad differ), a second one, pose maps as images and as a video."""
    root = tmp_path_factory.mktemp("uploads")
    random_image(0, (48, 36)).save(root / "person.png")
    random_image(1, (48, 36)).save(root / "other.png")
    for name in ("poses", "other_poses"):
        (root / name).mkdir()
    for i in range(3):
        stick_pose(i, 32).save(root / "poses" / f"{i + 1}.png")
        stick_pose(10 + i, 32).save(root / "other_poses" / f"{i + 1}.png")
    write_video(root / "poses.mp4", [np.asarray(stick_pose(i, 32)) for i in range(3)], fps=8)
    (root / "notes.txt").write_text("not an image\n")
    (root / "empty.png").write_bytes(b"")
    return root


def _pose_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.glob("*.png"))


def _no_frame_video(path: Path) -> Path:
    """A video file with no frame in it (an .avi keeps its empty video stream; an .mp4 keeps no stream)."""
    import subprocess

    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=black:s=32x32:d=1", "-frames:v", "0", str(path)], check=True)
    return path


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zipped:
        for name, data in entries.items():
            zipped.writestr(name, data)
    return path


def _png(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _one_line_naming(err: pytest.ExceptionInfo, name: str, tmp: Path) -> str:
    text = str(err.value)
    assert "\n" not in text and name in text and str(tmp) not in text, text
    return text


def test_bad_reference_uploads_are_one_line_naming_the_file(files):
    with pytest.raises(UserError) as err:
        load_reference(files / "empty.png")
    assert _one_line_naming(err, "empty.png", files) == "Reference image: empty.png is empty (0 bytes)"
    with pytest.raises(UserError) as err:
        load_reference(files / "notes.txt")
    assert _one_line_naming(err, "notes.txt", files).startswith(
        "Reference image: notes.txt: cannot read as an image")
    with pytest.raises(UserError, match="Reference image: nothing uploaded"):
        load_reference(None)


def test_bad_pose_uploads_are_one_line_naming_the_file(files, tmp_path):
    def refused(paths, limit=300):
        with pytest.raises(UserError) as err:
            pose_source(paths, tmp_path / "work", limit)
        return str(err.value)

    assert refused(str(_no_frame_video(tmp_path / "blank.avi"))) == "Poses: blank.avi: video has no frames"
    assert refused(str(_no_frame_video(tmp_path / "blank.mp4"))) == "Poses: blank.mp4: no video stream"
    assert refused(str(files / "poses.mp4"), limit=2) == (
        "Poses: poses.mp4 has more than 2 frames; the demo takes at most 2 (--max-frames): cut the video shorter")
    assert refused(_pose_files(files / "poses"), limit=2) == (
        "Poses: the upload of 3 images has 3 frames; the demo takes at most 2 (--max-frames)")
    assert refused([str(files / "notes.txt")]).startswith("Poses: notes.txt is not a video, a zip or an image")
    assert refused([str(files / "empty.png")]) == "Poses: empty.png is empty (0 bytes)"
    assert "not a mix" in refused([str(files / "poses.mp4"), *_pose_files(files / "poses")])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "2.png").write_text("text, named like an image")
    assert refused([str(tmp_path / "bad" / "2.png"), _pose_files(files / "poses")[0]]).startswith(
        "Poses: 2.png: cannot read as an image")
    assert refused([str(tmp_path / "nothing.png")]).startswith("Poses: nothing.png: the upload is missing")
    assert refused([]).startswith("Poses: nothing uploaded")
    pose = _png(stick_pose(0, 32))
    assert refused(str(_zip(tmp_path / "mixed.zip", {"a/1.png": pose, "a/notes.doc": b"x"}))) == (
        "Poses: mixed.zip holds files that are not pose-map images (notes.doc)")
    assert "holds no images" in refused(str(_zip(tmp_path / "empty.zip", {"a/readme.txt": b"x"})))
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    assert refused(str(tmp_path / "broken.zip")).startswith("Poses: broken.zip: cannot read as a zip")
    assert "has 3 frames" in refused(str(_zip(tmp_path / "long.zip", {f"{i}.png": pose for i in range(3)})), limit=2)
    for message in (refused(str(files / "poses.mp4"), limit=2), refused(str(tmp_path / "broken.zip"))):
        assert "\n" not in message and str(tmp_path) not in message and str(files) not in message


def test_a_zip_of_pose_maps_reads_in_natural_order_and_writes_nothing_outside(tmp_path):
    maps = {name: stick_pose(seed, 32) for seed, name in enumerate(["dance/2.png", "dance/10.png", "dance/1.png"])}
    entries = {name: _png(image) for name, image in maps.items()}
    entries.update({"__MACOSX/dance/._1.png": b"junk", "dance/1.json": b"{}", "../escape.png": b"junk",
                    "dance/.hidden.png": b"junk"})
    folder, count, described = pose_source(str(_zip(tmp_path / "poses.zip", entries)), tmp_path / "work", 10)
    assert count == 3 and described == "poses.zip (3 pose maps)" and folder.parent == tmp_path / "work"
    read = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())]
    for got, name in zip(read, ["dance/1.png", "dance/2.png", "dance/10.png"], strict=True):  # natural order
        assert np.array_equal(got, np.asarray(maps[name])), name
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == ["000000.png", "000001.png", "000002.png"]


def test_a_raw_video_is_one_video():
    with pytest.raises(UserError, match="Raw video: upload exactly one video of a person, not 2 files"):
        raw_video([str(REPO / "pose_example/dance_001.mp4")] * 2, 300)
    with pytest.raises(UserError, match="Raw video: astronaut.png is not a video"):
        raw_video(str(REPO / "example_data/image/out-of-domain/astronaut.png"), 300)


# ----- sessions and the page's generate functions -------------------------------------------------------------
class Spy:
    """A pipeline that records each call (then runs the real one) and can be made slow or broken."""

    def __init__(self, pipe, delay: float = 0.0, error: Exception | None = None) -> None:
        self.pipe, self.delay, self.error, self.calls, self.spans = pipe, delay, error, [], []

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        self.calls.append((args, kwargs))
        if self.error is not None:
            raise self.error
        time.sleep(self.delay)
        out = self.pipe(*args, **kwargs)
        self.spans.append((started, time.perf_counter()))
        return out


def fingerprint(call) -> tuple:
    """What a pipeline call was given: the images' pixels, the arguments, the generator's seed."""
    (reference, poses), kwargs = call
    arrays = tuple(np.asarray(image).tobytes() + bytes(str(image.size), "ascii") for image in [reference, *poses])
    plain = tuple(sorted((k, repr(v)) for k, v in kwargs.items() if k not in ("generator", "callback_on_step_end")))
    return arrays, plain, kwargs["generator"].initial_seed()


def frames_of(result) -> np.ndarray:
    """The frames a page result (video, grid, downloads, record, summary) wrote, from its run folder."""
    return np.stack([np.asarray(Image.open(p)) for p in sorted((Path(result[0]).parent / "frames").rglob("*.png"))])


@pytest.fixture
def quick_writes(monkeypatch):
    """Runs write their frames and run.json but only empty videos (writing mp4 and gif takes most of a tiny run):
    for the tests that compare frames."""
    import magicpose.commands.animate as animate
    import magicpose.commands.fyp_sample as fyp_sample

    def frames_and_record(folder: Path, frames, record: dict, names=()) -> None:
        (folder / "frames").mkdir(parents=True, exist_ok=True)
        for index, frame in enumerate(frames):
            frame.save(folder / "frames" / f"{index:04d}.png")
        (folder / "run.json").write_text(json.dumps(record))
        for name in names:
            (folder / name).touch()

    monkeypatch.setattr(animate, "write_outputs", lambda folder, reference, poses, frames, fps, record:
                        frames_and_record(folder, frames, record, ("animation.mp4", "animation.gif", "grid.mp4")))
    monkeypatch.setattr(fyp_sample, "_write_outputs", lambda folder, skeleton, frames, fps, record:
                        frames_and_record(folder, frames, record, ("video.mp4", "video.gif", "grid.mp4")))

    def several(folder, skeleton, prompts, videos, fps, record):
        for name in fyp_sample.several_output_names(prompts):
            if name not in ("frames", "run.json"):
                (folder / name).touch()
        frames_and_record(folder, [frame for video in videos for frame in video], record)

    monkeypatch.setattr(fyp_sample, "_write_several", several)


@pytest.fixture
def session(tmp_path, tiny_pipe):
    config = load_config([TINY_CONFIG], FAST, schema=MagicPoseConfig)
    return AnimateSession(config, tmp_path / "out", pipe=Spy(tiny_pipe), limits=Limits(max_frames=20))


def _event(app, api_name):
    [fn] = [f for f in app.fns.values() if f.api_name == api_name]
    return fn


def _arguments(fn, values: dict) -> list:
    """The generate function's arguments: each input component's own default, or `values[name]`."""
    names = [n for n in inspect.signature(fn.fn).parameters if n != "progress"]
    assert len(names) == len(fn.inputs)
    return [values.get(name, component.value) for name, component in zip(names, fn.inputs)]


def test_every_control_of_animate_reaches_the_pipeline_and_changes_the_frames(session, files, quick_writes):
    app = demo_app.build_app(session, None, demo_app.DemoInfo("tiny"))
    event = _event(app, "animate")
    base = {"reference": str(files / "person.png"), "poses": _pose_files(files / "poses")}
    labels = {name: getattr(c, "label", None) for name, c in
              zip([n for n in inspect.signature(event.fn).parameters if n != "progress"], event.inputs)}
    assert labels["steps"] == "Denoising steps" and labels["seed"] == "Seed" and labels["size"] == "Size (pixels)"
    reference_frames = frames_of(event.fn(*_arguments(event, base)))
    reference_call = fingerprint(session.pipe.calls[-1])
    assert len(reference_frames) == 3
    changed = {
        "reference": str(files / "other.png"), "poses": _pose_files(files / "other_poses"), "steps": 3,
        "guidance_scale": 3.5, "guidance_mode": "balance", "seed": 7, "frames": 2, "size": 48, "prompt": "a dancer",
        "resize_mode": "pad",
    }
    for name, value in changed.items():
        frames = frames_of(event.fn(*_arguments(event, {**base, name: value})))
        assert fingerprint(session.pipe.calls[-1]) != reference_call, name
        assert frames.shape != reference_frames.shape or not np.array_equal(frames, reference_frames), name
    # the exact values arrive
    event.fn(*_arguments(event, {**base, "guidance_scale": 3.5, "steps": 3, "seed": 7, "guidance_mode": "balance"}))
    args, kwargs = session.pipe.calls[-1]
    assert (kwargs["guidance_scale"], kwargs["num_inference_steps"], kwargs["guidance_mode"]) == (3.5, 3, "balance")
    assert kwargs["generator"].initial_seed() == 7 and args[0].size == (32, 32)
    # no motion module: the temporal controls are hidden and change nothing
    assert session.motion_limit is None
    assert not next(b for b in app.blocks.values() if isinstance(b, gr.Group) and not b.visible).visible
    for name, value in {"temporal": False, "context_length": 2, "context_overlap": 1}.items():
        event.fn(*_arguments(event, {**base, name: value}))
        assert fingerprint(session.pipe.calls[-1]) == reference_call, name


def test_a_run_leaves_the_animation_grid_frames_zip_and_record(session, files):
    from magicpose.media import count_frames

    app = demo_app.build_app(session, None, demo_app.DemoInfo("tiny"))
    event = _event(app, "animate")
    video, grid, downloads, record, summary = event.fn(*_arguments(
        event, {"reference": str(files / "person.png"), "poses": [str(files / "poses.mp4")]}))
    assert Path(video).name == "animation.mp4" and count_frames(video) == 3
    assert Path(grid).name == "grid.mp4" and count_frames(grid) == 3
    assert [Path(p).name for p in downloads] == ["frames.zip", "run.json"]
    with zipfile.ZipFile(downloads[0]) as zipped:
        assert zipped.namelist() == ["0000.png", "0001.png", "0002.png"]
    assert json.loads(Path(downloads[1]).read_text()) == record
    assert record["command"] == "demo animate" and record["num_frames"] == 3 and record["reference"] == "person.png"
    assert record["poses"] == "poses.mp4" and record["config"]["inference"]["steps"] == 2
    assert summary.startswith("3 frames at 32 px, 2 steps, in ")


def test_temporal_controls_only_with_a_motion_module_and_each_changes_the_frames(tmp_path, quick_writes):
    from magicpose.models.components import build_components
    from magicpose.pipelines.magicpose import MagicPosePipeline

    components = build_components(tiny_spec(motion_module=True))
    wake_controlnet(components["controlnet"])
    torch.manual_seed(0)
    with torch.no_grad():  # a trained module: the zero-initialised one equals the per-frame model
        for p in components["motion_adapter"].parameters():
            p.add_(torch.randn_like(p) * 0.05)
    config = load_config([TINY_CONFIG], FAST, schema=MagicPoseConfig)
    session = AnimateSession(config, tmp_path / "out", pipe=MagicPosePipeline(**components))
    assert session.motion_limit == 32
    app = demo_app.build_app(session, None, demo_app.DemoInfo("tiny + motion module"))
    event = _event(app, "animate")
    names = [n for n in inspect.signature(event.fn).parameters if n != "progress"]
    slider = event.inputs[names.index("context_length")]
    assert slider.maximum == 32 and slider.value == 16
    random_image(0, (48, 36)).save(tmp_path / "person.png")
    poses = [tmp_path / f"{i}.png" for i in range(5)]  # enough frames for windows that differ with their overlap
    for i, path in enumerate(poses):
        stick_pose(i, 32).save(path)
    base = {"reference": str(tmp_path / "person.png"), "poses": [str(p) for p in poses]}

    def run(**values):
        result = event.fn(*_arguments(event, {**base, **values}))
        return frames_of(result), result[3]

    whole, record = run()
    assert record["temporal_module"] is True and record["config"]["inference"]["context_length"] == 16
    per_frame, record = run(temporal=False)
    assert record["temporal_module"] is False and not np.array_equal(per_frame, whole)
    windows, _ = run(context_length=2, context_overlap=1)
    assert not np.array_equal(windows, whole)
    no_overlap, _ = run(context_length=2, context_overlap=0)
    assert not np.array_equal(no_overlap, windows)
    with pytest.raises(gr.Error, match="context_overlap: 2 / 4"):  # a refused combination is one line
        run(context_length=2, context_overlap=4)


def test_every_control_of_followyourpose_changes_the_video(session, tmp_path, quick_writes):
    def skeleton_images(name: str, first_seed: int) -> list[str]:
        (tmp_path / name).mkdir()
        for i in range(8):
            stick_pose(first_seed + i, 32).save(tmp_path / name / f"{i}.png")
        return [str(tmp_path / name / f"{i}.png") for i in range(8)]

    skeleton = skeleton_images("dance", 0)
    config = load_config([FYP_TINY], FAST, schema=FypConfig)
    fyp = FypSession(config, tmp_path / "out")
    app = demo_app.build_app(session, fyp, demo_app.DemoInfo("tiny", "fyp tiny"))
    event = _event(app, "followyourpose")
    base = {"prompts": "a robot dancing", "skeleton": skeleton, "frames": 3, "stride": 2, "steps": 2}
    first = event.fn(*_arguments(event, base))
    reference = frames_of(first)
    assert len(reference) == 3 and first[3]["skeleton_frames"] == [0, 2, 4]
    changed = {"prompts": "a cat dancing", "frames": 2, "stride": 3, "steps": 3, "guidance_scale": 2.0, "seed": 5}
    changed["skeleton"] = skeleton_images("other", 20)
    for name, value in changed.items():
        frames = frames_of(event.fn(*_arguments(event, {**base, name: value})))
        assert frames.shape != reference.shape or not np.array_equal(frames, reference), name
    # several prompts: one video each, the grid shows all; the page's video is the first prompt's
    video, grid, downloads, record, _ = event.fn(*_arguments(event, {**base, "prompts": "a robot\n\na cat\n"}))
    assert Path(video).name == "00_a_robot.mp4" and record["prompts"] == ["a robot", "a cat"]
    with pytest.raises(gr.Error, match=r"Skeleton: the uploaded images: has 8 frames; 3 frames at stride 5 .*"
                                       r"\(use Frames 2 or Stride 3\)"):
        event.fn(*_arguments(event, {**base, "stride": 5}))
    write_video(tmp_path / "dance.mp4", [np.asarray(stick_pose(seed, 32)) for seed in range(8)], fps=8)
    with pytest.raises(gr.Error, match=r"Skeleton: dance.mp4: has 8 frames"):
        event.fn(*_arguments(event, {**base, "stride": 5, "skeleton": [str(tmp_path / "dance.mp4")]}))
    with pytest.raises(gr.Error, match="Prompts: write what the video shows"):
        event.fn(*_arguments(event, {**base, "prompts": "  \n"}))


def test_without_fyp_config_the_tab_says_how_to_turn_it_on(session):
    app = demo_app.build_app(session, None, demo_app.DemoInfo("tiny"))
    assert [f for f in app.fns.values() if f.api_name == "followyourpose"] == []
    text = " ".join(str(b.value) for b in app.blocks.values() if isinstance(b, gr.Markdown))
    assert "--fyp-config configs/followyourpose/tiny.yaml" in text and "random weights" in text


def test_progress_reports_each_denoising_step(session, files, quick_writes):
    seen = []
    session.generate(str(files / "person.png"), str(files / "poses.mp4"), AnimateSettings(steps=3),
                     progress=lambda done, total, what: seen.append((done, total, what)))
    assert seen == [(i, 3, f"denoising step {i}/3") for i in (1, 2, 3)]


def test_cancel_stops_the_run_after_a_step_and_the_next_one_runs(session, files, quick_writes):
    steps = []

    def cancel_at_first_step(done, total, what):
        steps.append(done)
        session.cancel()

    with pytest.raises(Cancelled, match="cancelled"):
        session.generate(str(files / "person.png"), str(files / "poses.mp4"), AnimateSettings(steps=5),
                         progress=cancel_at_first_step)
    assert steps == [1] and list((session.out / "animate").iterdir()) == []  # a stopped run leaves nothing
    session.cancel()  # nothing runs: no effect on the next request
    result = session.generate(str(files / "person.png"), str(files / "poses.mp4"), AnimateSettings(steps=2))
    assert result.video.is_file() and not session.busy


def test_one_generation_at_a_time_per_model(session, files, quick_writes):
    session.pipe.delay = 0.3
    results, errors = [], []

    def request():
        try:
            results.append(session.generate(str(files / "person.png"), str(files / "poses.mp4"), AnimateSettings()))
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 2 and results[0].folder != results[1].folder
    (start_a, end_a), (start_b, end_b) = sorted(session.pipe.spans)
    assert end_a <= start_b
    # in the page: a queue of one per model, and Cancel cancels the generate event
    app = demo_app.build_app(session, None, demo_app.DemoInfo("tiny"))
    generate = _event(app, "animate")
    assert generate.concurrency_limit == 1 and generate.concurrency_id == "magicpose"
    generate_id = next(i for i, f in app.fns.items() if f is generate)
    assert any(generate_id in f.cancels for f in app.fns.values())


def test_errors_in_the_page_are_one_line_and_bugs_are_logged(session, files, quick_writes, caplog):
    app = demo_app.build_app(session, None, demo_app.DemoInfo("tiny"))
    event = _event(app, "animate")
    base = {"reference": str(files / "notes.txt"), "poses": [str(files / "poses.mp4")]}
    with pytest.raises(gr.Error) as err:
        event.fn(*_arguments(event, base))
    assert err.value.message == ("Reference image: notes.txt: cannot read as an image (unrecognised format or "
                                 "corrupt data)")
    session.pipe.error = RuntimeError("boom\nsecond line")
    with caplog.at_level("ERROR", logger="magicpose.demo"), pytest.raises(gr.Error) as err:
        event.fn(*_arguments(event, {**base, "reference": str(files / "person.png")}))
    assert err.value.message == "generation failed (RuntimeError: boom); the server log has details"
    assert "Traceback" in caplog.text and "second line" in caplog.text
    session.pipe.error = None
    assert Path(event.fn(*_arguments(event, {**base, "reference": str(files / "person.png")}))[0]).is_file()
    # the reference preview says the same at upload time
    with pytest.raises(gr.Error, match="notes.txt: cannot read as an image"):
        demo_app.preview_reference(str(files / "notes.txt"))
    assert demo_app.preview_reference(str(files / "person.png")).size == (48, 36)


def test_raw_video_without_the_pose_environment_says_how_to_get_it(session, files, monkeypatch, tmp_path):
    monkeypatch.setenv("MAGICPOSE_POSE_VENV", str(tmp_path / "no-such-venv"))
    app = demo_app.build_app(session, None, demo_app.DemoInfo("tiny"))
    event = _event(app, "animate")
    with pytest.raises(gr.Error) as err:
        event.fn(*_arguments(event, {"reference": str(files / "person.png"), "poses": [str(files / "poses.mp4")],
                                     "pose_kind": demo_app.RAW_VIDEO}))
    assert err.value.message.startswith("Poses: ") and "no pose environment" in err.value.message
    assert "bash scripts/setup_pose.sh" in err.value.message and "upload pose maps instead" in err.value.message


def test_the_examples_are_one_click_away(session):
    app = demo_app.build_app(session, None, demo_app.DemoInfo("tiny"))
    buttons = {b.value: b for b in app.blocks.values() if isinstance(b, gr.Button)}
    examples = {"astronaut + pose sequence 001", "astronaut + pose sequence 002", "astronaut + dance_001.mp4"}
    assert examples <= set(buttons)
    filled = [f.fn() for f in app.fns.values() if f.fn is not None and f.inputs == [] and f.outputs
              and getattr(f.outputs[0], "elem_id", None) == "reference-upload"]
    assert len(filled) == 3
    for reference, poses, kind in filled:
        assert Path(reference) == demo_app.EXAMPLE_REFERENCE and kind == demo_app.POSE_MAPS
        assert all(Path(p).is_file() for p in poses)
    assert sorted(len(poses) for _, poses, _ in filled) == [1, 24, 24]


# ----- the command --------------------------------------------------------------------------------------------
def test_demo_help_and_defaults():
    parser = build_parser()
    args = parser.parse_args(["demo", "--config", "configs/magicpose/tiny.yaml"])
    assert (args.host, args.port, args.max_file_size, args.max_frames, args.fyp_config) == (
        "127.0.0.1", 7860, 200.0, 300, None)
    demo = parser._subparsers._group_actions[0].choices["demo"]
    text = demo.format_help()
    for expected in ("--fyp-config", "127.0.0.1", "--max-file-size", "Animate a person", "magicpose[demo]",
                     "configs/magicpose/toy/demo.yaml"):
        assert expected in text, expected


def test_demo_command_loads_the_models_and_launches_on_localhost(monkeypatch, tmp_path, capsys):
    launched = {}

    def fake_launch(app, host, port, out, max_file_size, block=True):
        launched.update(app=app, host=host, port=port, out=out, max_file_size=max_file_size)

    real_launch = demo_app.launch
    monkeypatch.setattr(demo_app, "launch", fake_launch)
    assert main(["demo", "--config", str(TINY_CONFIG), "--fyp-config", str(FYP_TINY), "--out", str(tmp_path / "o"),
                 "--max-file-size", "0.5", "--device", "cpu", "--threads", "1"]) == 0
    assert (launched["host"], launched["port"], launched["max_file_size"]) == ("127.0.0.1", 7860, 512 * 1024)
    assert launched["out"] == (tmp_path / "o").resolve()
    assert {f.api_name for f in launched["app"].fns.values()} >= {"animate", "followyourpose"}
    assert "results go to" in capsys.readouterr().out
    # what `launch` hands Gradio: the host, the upload limit, a queue, the folders it may serve
    captured = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: captured.update(kwargs))
    real_launch(launched["app"], "127.0.0.1", 7861, tmp_path, 512 * 1024)
    assert captured["server_name"] == "127.0.0.1" and captured["server_port"] == 7861
    assert captured["max_file_size"] == 512 * 1024 and str(tmp_path) in captured["allowed_paths"]
    assert launched["app"]._queue.default_concurrency_limit == 1


@pytest.mark.parametrize("config, components, pixel_space", [
    ("configs/magicpose/inference.yaml", "configs/models/tiny", False),  # the released weights' config
    ("configs/magicpose/toy/demo.yaml", "configs/models/toy", True),  # the quickstart's toy model
])
def test_the_shipped_configs_open_a_saved_pipeline(config, components, pixel_space, monkeypatch, tmp_path, files):
    """The real configs as shipped, with `model.pretrained` pointing at a saved pipeline of their kind (random tiny
    weights in the released layout; a pixel-space toy model like outputs/quickstart/runs/stage2/pipeline)."""
    from magicpose.models.components import build_components
    from magicpose.pipelines.magicpose import MagicPosePipeline

    parts = build_components(tiny_spec(components=str(REPO / components), pixel_space=pixel_space))
    MagicPosePipeline(**parts).save_pretrained(tmp_path / "pipeline")
    override = tmp_path / "weights.yaml"
    override.write_text(f"model:\n  pretrained: {tmp_path / 'pipeline'}\n  dtype: float32\n")
    launched = {}
    monkeypatch.setattr(demo_app, "launch", lambda app, *args, **kwargs: launched.update(app=app))
    assert main(["demo", "--config", str(REPO / config), "--config", str(override), "--device", "cpu",
                 "--out", str(tmp_path / "out")]) == 0
    event = _event(launched["app"], "animate")
    values = {"reference": str(files / "person.png"), "poses": [str(files / "poses.mp4")], "steps": 2, "size": 32}
    video, grid, downloads, record, summary = event.fn(*_arguments(event, values))
    assert record["num_frames"] == 3 and record["config"]["model"]["pixel_space"] is pixel_space
    assert record["config"]["model"]["pretrained"] == str(tmp_path / "pipeline") and Path(video).is_file()


def test_demo_command_errors_are_one_line(monkeypatch, capsys):
    assert main(["demo", "--config", str(FYP_TINY)]) == 1
    assert "is a followyourpose config; pass it as --fyp-config" in capsys.readouterr().err
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["demo", "--config", str(TINY_CONFIG)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("magicpose demo: error: the web demo needs gradio, which is not installed: "
                   "pip install 'magicpose[demo]'")


# ----- a raw video through the pose environment ----------------------------------------------------------------
@pytest.fixture(scope="module")
def pose_env():
    return require_pose_env("a raw video through the demo's pose extraction")


def test_a_raw_video_is_animated_through_pose_extraction(pose_env, session, tmp_path):
    from skimage import data

    photo = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256), Image.BILINEAR))
    video = tmp_path / "me dancing.mp4"
    write_video(video, [np.roll(photo, 3 * i, axis=1) for i in range(4)], fps=8)
    result = session.generate(str(REPO / "example_data/image/out-of-domain/astronaut.png"), [str(video)],
                              AnimateSettings(), raw=True)
    report = json.loads((result.folder / "skeleton" / "report.json").read_text())
    assert report["style"] == "openpose" and result.record["poses"] == "me dancing.mp4 (raw video, poses extracted)"
    assert result.record["num_frames"] == len(list((result.folder / "skeleton" / "pose_maps").glob("*.png"))) >= 3
