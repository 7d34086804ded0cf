"""The page: the form, the examples, progress and cancel, the result, the key's gallery.

Layout only; what the buttons do is in ``actions.py`` and every string in ``texts.py``."""

from __future__ import annotations

import html
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import FastAPI
from gradio.utils import get_upload_folder

from gateway.errors import ApiError, InvalidImageError
from gateway.jobs.records import Job
from gateway.schemas import FitMode, JobStatus, Resolution, VideoParams
from gateway.ui.actions import (
    OUTPUT_FORMATS,
    EtaClock,
    FormValues,
    UiActions,
    describe_error,
    form_from_params,
    parameters_used,
    progress_html,
    result_html,
)
from gateway.ui.example_images import EXAMPLES, EXAMPLES_DIR
from gateway.ui.texts import LANGUAGES, TEXTS, pick_language, text

LANGUAGE_NAMES = {"en": "English", "zh": "中文"}
CSS = """
#i2v-status progress { width: 100%; height: 1.2em; }
#i2v-result video, #i2v-result img { max-width: 100%; }
.i2v-signed-in form { display: inline; }
"""


def uploaded_path(payload: dict | None) -> str | None:
    """The file of a raw image payload, only if it lies in Gradio's upload folder: without
    Gradio's preprocessing, a client could otherwise name any file on the server."""
    path = payload.get("path") if isinstance(payload, dict) else None
    if not path:
        return None
    resolved = Path(os.path.realpath(path))
    if not resolved.is_relative_to(Path(os.path.realpath(get_upload_folder()))):
        raise InvalidImageError("the image must be uploaded through this page")
    return str(resolved)


def _default(name: str) -> Any:
    value = VideoParams.model_fields[name].default
    return value.value if hasattr(value, "value") else value


def signed_in_html(language: str, caller: str | None, sign_in_required: bool) -> str:
    if not sign_in_required:
        return ""
    return (f'<div class="i2v-signed-in">{html.escape(text(language, "signed_in_as"))} '
            f'<b id="i2v-caller">{html.escape(caller or "")}</b> · <form method="post" action="logout">'
            f'<button type="submit" id="i2v-sign-out">{html.escape(text(language, "sign_out"))}</button>'
            "</form></div>")


def build_page(app: FastAPI, sign_in_required: bool, uploads_kept_s: float) -> gr.Blocks:
    """The page; images uploaded to it are deleted ``uploads_kept_s`` after upload (and at shutdown)."""
    actions = UiActions(app)
    # An upload is needed until its job is submitted (the job keeps its own copy); Gradio's
    # sweep runs every hour at most, so a short retention is honoured within the hour.
    kept_s = max(1, int(uploads_kept_s))
    with gr.Blocks(title=TEXTS["en"]["title"], analytics_enabled=False,
                   delete_cache=(min(kept_s, 3600), kept_s)) as page:
        language = gr.State("en")
        job_id = gr.State("")
        gallery_params = gr.State([])
        with gr.Row():
            title = gr.Markdown(f"# {TEXTS['en']['title']}\n{TEXTS['en']['intro']}")
            with gr.Column(scale=0, min_width=220):
                switch = gr.Radio([(LANGUAGE_NAMES[code], code) for code in LANGUAGES], value="en",
                                  label=TEXTS["en"]["language"], elem_id="i2v-language")
                signed_in = gr.HTML("")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", sources=["upload", "clipboard"], label=TEXTS["en"]["image"],
                                 elem_id="i2v-image", height=300)
                prompt = gr.Textbox(label=TEXTS["en"]["prompt"], placeholder=TEXTS["en"]["prompt_placeholder"],
                                    elem_id="i2v-prompt", lines=2)
                negative = gr.Textbox(label=TEXTS["en"]["negative_prompt"], elem_id="i2v-negative")
                with gr.Row():
                    resolution = gr.Dropdown([r.value for r in Resolution], value=_default("resolution"),
                                             label=TEXTS["en"]["resolution"], elem_id="i2v-resolution")
                    fit = gr.Radio([f.value for f in FitMode], value=_default("fit"), label=TEXTS["en"]["fit"],
                                   elem_id="i2v-fit")
                    output_format = gr.Dropdown(OUTPUT_FORMATS, value=_default("output_format"),
                                                label=TEXTS["en"]["output_format"], elem_id="i2v-output-format")
                frames = gr.Slider(8, 32, value=_default("num_frames"), step=1, label=TEXTS["en"]["frames"],
                                   elem_id="i2v-frames")
                fps = gr.Slider(1, 60, value=_default("fps"), step=1, label=TEXTS["en"]["fps"], elem_id="i2v-fps")
                steps = gr.Slider(1, 150, value=_default("steps"), step=1, label=TEXTS["en"]["steps"],
                                  elem_id="i2v-steps")
                guidance = gr.Slider(0, 50, value=_default("guidance_scale"), step=0.5, label=TEXTS["en"]["guidance"],
                                     elem_id="i2v-guidance")
                with gr.Row():
                    seed = gr.Number(value=None, precision=0, minimum=0, maximum=2**53 - 1, label=TEXTS["en"]["seed"],
                                     elem_id="i2v-seed")
                    random_seed = gr.Checkbox(value=True, label=TEXTS["en"]["random_seed"], elem_id="i2v-random-seed")
                with gr.Row():
                    generate = gr.Button(TEXTS["en"]["generate"], variant="primary", elem_id="i2v-generate")
                    cancel = gr.Button(TEXTS["en"]["cancel"], variant="stop", elem_id="i2v-cancel")
                examples_label = gr.Markdown(f"**{TEXTS['en']['examples']}**")
                gr.Examples([[str(EXAMPLES_DIR / name), example_prompt] for name, example_prompt in EXAMPLES],
                            inputs=[image, prompt], elem_id="i2v-examples")
            with gr.Column():
                status = gr.HTML(progress_html("en", "idle"), elem_id="i2v-status-box")
                result = gr.HTML("", elem_id="i2v-result-box")
                used = gr.JSON(label=TEXTS["en"]["parameters_used"], elem_id="i2v-used")
        gallery = gr.Gallery(label=TEXTS["en"]["gallery"], columns=6, height=240, object_fit="cover",
                             allow_preview=False, elem_id="i2v-gallery")
        refresh = gr.Button(TEXTS["en"]["refresh"], size="sm", elem_id="i2v-refresh")

        form = [image, prompt, negative, resolution, frames, fps, steps, guidance, seed, random_seed, fit,
                output_format]
        reusable = [prompt, negative, resolution, frames, fps, steps, guidance, seed, random_seed, fit, output_format]
        labelled: list[tuple[Any, str]] = [
            (switch, "language"), (image, "image"), (prompt, "prompt"), (negative, "negative_prompt"),
            (resolution, "resolution"), (fit, "fit"), (output_format, "output_format"), (frames, "frames"),
            (fps, "fps"), (steps, "steps"), (guidance, "guidance"), (seed, "seed"), (random_seed, "random_seed"),
            (used, "parameters_used"), (gallery, "gallery")]
        buttons = [(generate, "generate"), (cancel, "cancel"), (refresh, "refresh")]
        relabel_outputs = [title, examples_label, *[c for c, _ in labelled], *[b for b, _ in buttons]]

        def relabel(code: str) -> list[Any]:
            t = TEXTS[code]
            return [gr.update(value=f"# {t['title']}\n{t['intro']}"), gr.update(value=f"**{t['examples']}**"),
                    *[gr.update(label=t[key]) for _, key in labelled], *[gr.update(value=t[key]) for _, key in buttons]]

        async def gallery_items(request: gr.Request) -> tuple[list[tuple[str, str]], list[dict]]:
            found = await actions.recent(request)
            items = [(str(path), f"{params.prompt} · {params.size[0]}x{params.size[1]} · {params.num_frames}f · "
                                 f"{params.steps} steps · seed {view.result.seed if view.result else ''}")
                     for view, params, path in found]
            return items, [params.model_dump(mode="json") for _, params, _ in found]

        async def on_load(request: gr.Request) -> list[Any]:
            code = pick_language(request.headers.get("accept-language"))
            items, params = await gallery_items(request)
            return [code, gr.update(value=code), signed_in_html(code, request.username, sign_in_required),
                    progress_html(code, "idle"), items, params, *relabel(code)]

        page.load(on_load, outputs=[language, switch, signed_in, status, gallery, gallery_params, *relabel_outputs])

        async def on_switch(code: str, request: gr.Request) -> list[Any]:
            return [code, signed_in_html(code, request.username, sign_in_required), progress_html(code, "idle"),
                    *relabel(code)]

        switch.input(on_switch, inputs=[switch], outputs=[language, signed_in, status, *relabel_outputs])

        async def on_generate(code: str, image: dict | None, prompt: str, negative: str, resolution: str,
                              frames: float, fps: float, steps: float, guidance: float, seed: float | None,
                              random_seed: bool, fit: str, output_format: str | None,
                              request: gr.Request) -> AsyncIterator[list[Any]]:
            # Outputs: job_id, status, result, used, gallery, gallery_params
            keep = gr.update()
            try:
                values = FormValues(uploaded_path(image), prompt, negative, resolution, frames, fps, steps, guidance,
                                    seed, random_seed, fit, output_format)
                job: Job = await actions.submit(values, code, request)
            except Exception as exc:  # noqa: BLE001 - shown as the API's message, never a trace
                message = describe_error(exc)
                gr.Warning(message)
                yield ["", progress_html(code, "error", message=message), "", None, keep, keep]
                return
            yield [job.id, progress_html(code, "queued", queue_position=getattr(job, "queue_position", None),
                                         job_id=job.id),
                   "", None, keep, keep]
            clock = EtaClock()
            async for event, ended in actions.follow(job):
                if ended is None:
                    eta = getattr(event, "eta_s", None)
                    if eta is None and event.step is not None and event.total:
                        eta = clock.eta_s(event.step, event.total)
                    yield [job.id, progress_html(code, event.type, event.step, event.total, eta,
                                                 getattr(event, "queue_position", None), job_id=job.id),
                           keep, keep, keep, keep]
                    continue
                if ended.status is JobStatus.failed and ended.error is not None:
                    gr.Warning(ended.error.message)
                progress = ended.progress
                items, params = await gallery_items(request)
                yield ["", progress_html(code, ended.status.value, progress.step if progress else None,
                                         progress.total if progress else None, message=ended.message,
                                         job_id=job.id),
                       result_html(code, ended), parameters_used(ended, job.params), items, params]

        # preprocess=False: the raw upload reaches the gateway's own image check, so an unreadable
        # file gets the API's message rather than Gradio's generic error.
        generate.click(on_generate, inputs=[language, *form], preprocess=False,
                       outputs=[job_id, status, result, used, gallery, gallery_params], concurrency_limit=None)

        async def on_cancel(code: str, current: str, request: gr.Request) -> Any:
            if not current:
                gr.Info(text(code, "nothing_to_cancel"))
                return gr.update()
            try:
                view = await actions.cancel(current, request)
            except ApiError as exc:
                gr.Warning(exc.message)
                return gr.update()
            return progress_html(code, view.status.value, job_id=view.job_id)

        cancel.click(on_cancel, inputs=[language, job_id], outputs=[status], concurrency_limit=None)

        async def on_refresh(request: gr.Request) -> tuple[list[tuple[str, str]], list[dict]]:
            return await gallery_items(request)

        refresh.click(on_refresh, outputs=[gallery, gallery_params], concurrency_limit=None)

        def on_pick(params: list[dict], selected: gr.SelectData) -> list[Any]:
            index = selected.index if isinstance(selected.index, int) else selected.index[0]
            return form_from_params(VideoParams.model_validate(params[index]))

        gallery.select(on_pick, inputs=[gallery_params], outputs=reusable)
    return page
