"""The Gradio page of `magicpose demo`: two tabs, one per model (the only module of the package that imports gradio).

"Animate a person" (MagicPose) and "Text + skeleton to video" (Follow-Your-Pose) each call their session
(`magicpose.demo.sessions`), which checks the uploads and runs the command-line code path. Every control is an
argument of the tab's generate function (`animate_fn` / `fyp_fn`, also what a test calls), so nothing on the page is
decoration. What can go wrong with an upload is a `gr.Error` of one line naming the file and the problem; anything
else is logged with its traceback on the server, and the page gets one line. Each model generates one request at a
time (a Gradio queue of concurrency 1 per model); Cancel stops the running one after its current denoising step.

Uploads are `gr.File` fields (not `gr.Image` / `gr.Video`), so a file that is not an image reaches our own checks and
gets our message instead of Gradio's bare "Error" badge.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves this machine

import gradio as gr  # noqa: E402

from magicpose.demo.sessions import AnimateSession, AnimateSettings, FypSession, FypSettings, Result  # noqa: E402
from magicpose.demo.uploads import load_reference  # noqa: E402
from magicpose.errors import UserError  # noqa: E402
from magicpose.paths import REPO_ROOT  # noqa: E402

log = logging.getLogger("magicpose.demo")

POSE_MAPS = "Pose maps (a video, a zip or the images)"
RAW_VIDEO = "Raw video of a person (extract its poses)"
SKELETON = "Skeleton (a video, a zip or the images)"
RAW_SKELETON = "Raw video of a person (extract its skeleton)"

EXAMPLE_REFERENCE = REPO_ROOT / "example_data/image/out-of-domain/astronaut.png"
EXAMPLE_POSES = {name: REPO_ROOT / "example_data/pose_sequence" / name for name in ("001", "002")}
EXAMPLE_VIDEO = REPO_ROOT / "pose_example/dance_001.mp4"
EXAMPLE_PROMPT = "an astronaut dancing on the moon"
EXAMPLE_DIRS = (REPO_ROOT / "example_data", REPO_ROOT / "pose_example")
# the page's fonts come from this machine, not from Google Fonts: it works offline
THEME_FONTS = {"font": ["ui-sans-serif", "system-ui", "sans-serif"], "font_mono": ["ui-monospace", "monospace"]}


@dataclass
class DemoInfo:
    """What the page says about its models."""

    config: str
    fyp_config: str | None = None


def _pose_files(folder: Path) -> list[str]:
    from magicpose.media import list_images

    return [str(p) for p in list_images(folder)]


def _page_error(err: BaseException) -> gr.Error:
    """One line for the page: a `UserError` as it is; anything else (a bug, or a library's refusal) with its type,
    its traceback in the server log."""
    if isinstance(err, UserError):
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        log.info("refused: %s", text)
    else:
        log.exception("generation failed")
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        text = f"generation failed ({type(err).__name__}{': ' + first if first else ''}); the server log has details"
    return gr.Error(html.escape(text), print_exception=False)


def _gradio_progress(progress: Any) -> Callable[[int, int, str], None]:
    def report(done: int, total: int, what: str) -> None:
        progress((done, total), desc=what, unit="steps")

    return report


def _outputs(result: Result) -> tuple:
    return (str(result.video), str(result.grid), [str(result.frames_zip), str(result.run_json)], result.record,
            result.summary)


def animate_fn(session: AnimateSession) -> Callable:
    """The "Animate a person" tab's generate function: one argument per control, in the page's order."""

    def generate(reference, poses, pose_kind, steps, guidance_scale, guidance_mode, seed, frames, size, prompt,
                 resize_mode, temporal, context_length, context_overlap, progress=gr.Progress()):  # noqa: B008
        settings = AnimateSettings(
            steps=int(steps), guidance_scale=float(guidance_scale), guidance_mode=guidance_mode, seed=int(seed),
            frames=int(frames), size=int(size), prompt=prompt or "", resize_mode=resize_mode, temporal=bool(temporal),
            context_length=int(context_length), context_overlap=int(context_overlap),
        )
        try:
            result = session.generate(reference, poses, settings, raw=pose_kind == RAW_VIDEO,
                                      progress=_gradio_progress(progress))
        except Exception as err:  # noqa: BLE001 - every failure becomes one line in the page
            raise _page_error(err) from None
        log.info("animate: %s", result.summary)
        return _outputs(result)

    return generate


def fyp_fn(session: FypSession) -> Callable:
    """The "Text + skeleton to video" tab's generate function: one argument per control, in the page's order."""

    def generate(prompts, skeleton, skeleton_kind, frames, stride, steps, guidance_scale, seed,
                 progress=gr.Progress()):  # noqa: B008
        settings = FypSettings(frames=int(frames), stride=int(stride), steps=int(steps),
                               guidance_scale=float(guidance_scale), seed=int(seed))
        try:
            result = session.generate(prompts, skeleton, settings, raw=skeleton_kind == RAW_SKELETON,
                                      progress=_gradio_progress(progress))
        except Exception as err:  # noqa: BLE001
            raise _page_error(err) from None
        log.info("followyourpose: %s", result.summary)
        return _outputs(result)

    return generate


def preview_reference(path: str | None):
    """The reference as the model will read it (upright RGB), or the problem with the upload."""
    if not path:
        return None
    try:
        return load_reference(path)
    except UserError as err:
        raise _page_error(err) from None


def _results_column(prefix: str, video_label: str, grid_label: str) -> list:
    video = gr.Video(label=video_label, elem_id=f"{prefix}-video", loop=True, interactive=False)
    grid = gr.Video(label=grid_label, elem_id=f"{prefix}-grid", loop=True, interactive=False)
    files = gr.File(label="Downloads: the frames (zip) and the run record (run.json)", file_count="multiple",
                    elem_id=f"{prefix}-downloads", interactive=False)
    record = gr.JSON(label="Run record (run.json): inputs, settings, resolved config, versions", open=False,
                     elem_id=f"{prefix}-record")
    status = gr.Markdown(elem_id=f"{prefix}-status")
    return [video, grid, files, record, status]


def _animate_tab(session: AnimateSession, max_frames: int) -> None:
    inf = session.config.inference
    multiple = session.size_multiple
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("**Examples** (one click; then Generate):")
            with gr.Row():
                examples = [gr.Button(f"astronaut + pose sequence {name}", size="sm") for name in EXAMPLE_POSES]
                example_video = gr.Button("astronaut + dance_001.mp4", size="sm")
            reference = gr.File(label="Reference image: the person to animate (PNG, JPEG, WebP, ...)",
                                elem_id="reference-upload")
            preview = gr.Image(label="Reference as read", interactive=False, height=160, elem_id="reference-preview")
            pose_kind = gr.Radio([POSE_MAPS, RAW_VIDEO], value=POSE_MAPS, label="Poses are",
                                 info="raw videos go through pose extraction (mediapipe, the pose environment "
                                      "made by scripts/setup_pose.sh)")
            poses = gr.File(label="Poses: a video of OpenPose maps, a zip of them, or all the images of a folder",
                            file_count="multiple", elem_id="poses-upload", height=200)
        with gr.Column(scale=1):
            steps = gr.Slider(1, max(100, inf.steps), value=inf.steps, step=1, label="Denoising steps",
                              elem_id="steps")
            guidance_scale = gr.Slider(0.0, 20.0, value=inf.guidance_scale, step=0.5, label="Guidance scale",
                                       info="Image-CFG scale (1: no guidance)", elem_id="guidance-scale")
            from magicpose.models.magicpose import GUIDANCE_MODES

            guidance_mode = gr.Radio(list(GUIDANCE_MODES), value=inf.guidance_mode, label="Guidance mode",
                                     info="controlnet_important: guide on reference + pose against the plain UNet "
                                          "(the paper's); balance: text guidance with both in each half")
            seed = gr.Number(value=inf.seed, precision=0, label="Seed", elem_id="seed")
            frames = gr.Slider(1, max_frames, value=min(16, max_frames), step=1, label="Frames",
                               info="the first N poses", elem_id="frames")
            smallest = min(inf.size, multiple * -(-32 // multiple))  # 32 px or the next multiple (or the config's)
            size = gr.Slider(smallest, max(1024, inf.size), value=inf.size, step=multiple, label="Size (pixels)",
                             info=f"square frames; a multiple of {multiple} for this model", elem_id="size")
            with gr.Accordion("More settings", open=False):
                prompt = gr.Textbox(value=inf.prompt, label="Prompt (optional; MagicPose is trained without text)")
                resize_mode = gr.Radio(["crop", "pad"], value=inf.resize_mode, label="Make inputs square by",
                                       info="crop: the centre square; pad: keep everything, pad with black")
            limit = session.motion_limit
            with gr.Group(visible=limit is not None):
                gr.Markdown("**Temporal module** (this model has one)")
                temporal = gr.Checkbox(value=True, label="Use the temporal module (off: frames made independently)")
                context_length = gr.Slider(1, limit or 16, value=min(16, limit or 16), step=1,
                                           label="Context window (frames)")
                context_overlap = gr.Slider(0, max(0, (limit or 16) - 1), value=min(4, (limit or 16) - 1), step=1,
                                            label="Window overlap (frames)")
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id="animate-generate")
                stop = gr.Button("Cancel", variant="stop", elem_id="animate-cancel")
        with gr.Column(scale=1):
            outputs = _results_column("animate", "Animation", "Reference | pose | result")

    reference.change(preview_reference, reference, preview, show_progress="hidden")
    for button, name in zip(examples, EXAMPLE_POSES):
        button.click(lambda name=name: (str(EXAMPLE_REFERENCE), _pose_files(EXAMPLE_POSES[name]), POSE_MAPS),
                     outputs=[reference, poses, pose_kind])
    example_video.click(lambda: (str(EXAMPLE_REFERENCE), [str(EXAMPLE_VIDEO)], POSE_MAPS),
                        outputs=[reference, poses, pose_kind])
    inputs = [reference, poses, pose_kind, steps, guidance_scale, guidance_mode, seed, frames, size, prompt,
              resize_mode, temporal, context_length, context_overlap]
    event = run.click(animate_fn(session), inputs, outputs, api_name="animate", concurrency_limit=1,
                      concurrency_id="magicpose", show_progress_on=[outputs[0], outputs[-1]])
    stop.click(session.cancel, None, None, cancels=[event], queue=False)


def _fyp_tab(session: FypSession | None, max_frames: int) -> None:
    if session is None:
        gr.Markdown(
            "Follow-Your-Pose is off: start the demo with `--fyp-config`, e.g.\n\n"
            "`magicpose demo --config configs/magicpose/tiny.yaml --fyp-config configs/followyourpose/tiny.yaml` "
            "(tiny, random weights, CPU) or `--fyp-config configs/followyourpose/inference.yaml` (the released "
            "weights, see pretrained_weights/README.md).")
        return
    inf = session.config.inference
    with gr.Row():
        with gr.Column(scale=1):
            prompts = gr.Textbox(value=inf.prompt or EXAMPLE_PROMPT, lines=3, label="Prompts (one per line, one video "
                                 "each)", elem_id="fyp-prompts")
            skeleton_kind = gr.Radio([SKELETON, RAW_SKELETON], value=SKELETON, label="Skeleton is")
            skeleton = gr.File(label="Skeleton: a pose video (mmpose or OpenPose style), a zip of pose images, or "
                                     "the images", file_count="multiple", elem_id="skeleton-upload", height=200)
            example = gr.Button("Example: pose_example/dance_001.mp4", size="sm")
        with gr.Column(scale=1):
            frames = gr.Slider(1, max_frames, value=min(inf.frames, max_frames), step=1, label="Frames",
                               elem_id="fyp-frames")
            stride = gr.Slider(1, 30, value=inf.stride, step=1, label="Stride (use every n-th skeleton frame)",
                               elem_id="fyp-stride")
            steps = gr.Slider(1, max(100, inf.steps), value=inf.steps, step=1, label="Denoising steps",
                              elem_id="fyp-steps")
            guidance_scale = gr.Slider(0.0, 30.0, value=inf.guidance_scale, step=0.5,
                                       label="Guidance scale (text CFG)", elem_id="fyp-guidance-scale")
            seed = gr.Number(value=inf.seed, precision=0, label="Seed", elem_id="fyp-seed")
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id="fyp-generate")
                stop = gr.Button("Cancel", variant="stop", elem_id="fyp-cancel")
        with gr.Column(scale=1):
            outputs = _results_column("fyp", "Video (the first prompt's)", "Skeleton | one column per prompt")
    example.click(lambda: ([str(EXAMPLE_VIDEO)], SKELETON, EXAMPLE_PROMPT), outputs=[skeleton, skeleton_kind, prompts])
    inputs = [prompts, skeleton, skeleton_kind, frames, stride, steps, guidance_scale, seed]
    event = run.click(fyp_fn(session), inputs, outputs, api_name="followyourpose", concurrency_limit=1,
                      concurrency_id="followyourpose", show_progress_on=[outputs[0], outputs[-1]])
    stop.click(session.cancel, None, None, cancels=[event], queue=False)


def _random_weights(spec: Any) -> bool:
    return not spec.pretrained and set(spec.paths or {}) <= {"tokenizer"}


def build_app(animate: AnimateSession, fyp: FypSession | None, info: DemoInfo) -> gr.Blocks:
    """The page (not launched). `animate` / `fyp`: the loaded models (`fyp` None: that tab only says how to turn
    it on)."""
    max_frames = animate.limits.max_frames

    def described(session: Any, config: str) -> str:
        note = " (random weights: the output is noise; this proves the path, not the model)" \
            if _random_weights(session.config.model) else ""
        return f"`{config}` on {session.device}{note}"

    with gr.Blocks(title="MagicPose demo", analytics_enabled=False) as app:
        gr.Markdown(f"# MagicPose\nAnimate a person with a pose sequence (MagicPose), or make a video from text "
                    f"and a skeleton (Follow-Your-Pose). Model: {described(animate, info.config)}"
                    + (f"; Follow-Your-Pose: {described(fyp, info.fyp_config)}" if fyp else "") + ".")
        with gr.Tab("Animate a person"):
            _animate_tab(animate, max_frames)
        with gr.Tab("Text + skeleton to video"):
            _fyp_tab(fyp, max_frames)
    return app


def theme() -> gr.themes.Base:
    return gr.themes.Default(**THEME_FONTS)


def launch(app: gr.Blocks, host: str, port: int, out: Path, max_file_size: int, block: bool = True) -> Any:
    """Serve the page: one request at a time per model (the events' own limit), uploads above `max_file_size` bytes
    refused by Gradio, files served from `out` and the shipped examples only."""
    app.queue(default_concurrency_limit=1)
    return app.launch(
        server_name=host, server_port=port, max_file_size=max_file_size, show_error=False, quiet=False,
        allowed_paths=[str(out), *(str(d) for d in EXAMPLE_DIRS)], ssr_mode=False, prevent_thread_lock=not block,
        theme=theme(), footer_links=["gradio"],
    )
