"""The page: the form, the examples, progress and cancel, the result, the key's gallery.

Layout and events; what the buttons do is in ``actions.py``, what runs in the browser in
``browser_side.py`` and every string in ``texts.py``."""

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
from gateway.schemas import FitMode, JobResponse, JobStatus, Resolution, VideoParams
from gateway.ui.actions import (
    OUTPUT_FORMATS,
    EtaClock,
    FormValues,
    GalleryItem,
    UiActions,
    describe_error,
    form_from_params,
    parameters_used,
    progress_html,
    result_html,
    usage_html,
)
from gateway.ui.browser_side import REMEMBER_LANGUAGE_JS, REMEMBERED_LANGUAGE_JS
from gateway.ui.example_images import EXAMPLES, EXAMPLES_DIR
from gateway.ui.guard import kept_picture_of
from gateway.ui.texts import LANGUAGES, TEXTS, pick_language, text

LANGUAGE_NAMES = {"en": "English", "zh": "中文"}
# How often an open page reads its key's usage again: work done through the API or another tab
# shows up without a reload (a job this page follows updates it when the job ends).
USAGE_REFRESH_S = 20


def uploaded_path(payload: dict | None, caller: str) -> str | None:
    """The file of a raw image payload, only if it lies in Gradio's upload folder (and, for a
    picture kept for reuse, is the caller's own): without Gradio's preprocessing, a client could
    otherwise name any file on the server."""
    path = payload.get("path") if isinstance(payload, dict) else None
    if not path:
        return None
    resolved = Path(os.path.realpath(path))
    if not resolved.is_relative_to(Path(os.path.realpath(get_upload_folder()))) \
            or not kept_picture_of(str(resolved), caller):
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
    # Pages (Gradio sessions) following a job now: one click is one job, whatever the browser sends.
    following: set[str] = set()
    # An upload is needed until its job is submitted (the job keeps its own copy); Gradio's
    # sweep runs every hour at most, so a short retention is honoured within the hour.
    kept_s = max(1, int(uploads_kept_s))
    with gr.Blocks(title=TEXTS["en"]["title"], analytics_enabled=False,
                   delete_cache=(min(kept_s, 3600), kept_s)) as page:
        language = gr.State("en")
        job_id = gr.State("")
        gallery_params = gr.State([])
        gallery_page = gr.State(0)
        # What the status line and the result show, to say it again in another language.
        shown = gr.State({})
        # The language this browser chose before (localStorage), sent by the load event's script:
        # a State's value never comes from the browser.
        remembered = gr.Textbox(visible=False)
        with gr.Row(elem_id="i2v-header"):
            title = gr.Markdown(f"# {TEXTS['en']['title']}\n{TEXTS['en']['intro']}", elem_id="i2v-title")
            with gr.Column(scale=0, min_width=220):
                switch = gr.Radio([(LANGUAGE_NAMES[code], code) for code in LANGUAGES], value="en",
                                  label=TEXTS["en"]["language"], elem_id="i2v-language")
                signed_in = gr.HTML("")
                usage_box = gr.HTML("", elem_id="i2v-usage-box")
        usage_timer = gr.Timer(USAGE_REFRESH_S, active=sign_in_required)
        with gr.Row(elem_id="i2v-main"):
            with gr.Column(elem_id="i2v-form"):
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
                # Right under Generate, where a phone shows it too.
                status = gr.HTML(progress_html("en", "idle"), elem_id="i2v-status-box")
            with gr.Column(elem_id="i2v-output"):
                result = gr.HTML("", elem_id="i2v-result-box")
                used = gr.JSON(label=TEXTS["en"]["parameters_used"], elem_id="i2v-used")
        examples = gr.Examples([[str(EXAMPLES_DIR / name), example_prompt] for name, example_prompt in EXAMPLES],
                               inputs=[image, prompt], elem_id="i2v-examples", label=TEXTS["en"]["examples"])
        gallery = gr.Gallery(label=TEXTS["en"]["gallery"], columns=6, height=240, object_fit="cover",
                             allow_preview=False, elem_id="i2v-gallery")
        with gr.Row():
            newer = gr.Button(TEXTS["en"]["newer"], size="sm", elem_id="i2v-newer", interactive=False)
            page_label = gr.Markdown(TEXTS["en"]["page"].format(page=1), elem_id="i2v-page")
            older = gr.Button(TEXTS["en"]["older"], size="sm", elem_id="i2v-older", interactive=False)
            refresh = gr.Button(TEXTS["en"]["refresh"], size="sm", elem_id="i2v-refresh")

        form = [image, prompt, negative, resolution, frames, fps, steps, guidance, seed, random_seed, fit,
                output_format]
        reusable = [prompt, negative, resolution, frames, fps, steps, guidance, seed, random_seed, fit, output_format]
        labelled: list[tuple[Any, str]] = [
            (switch, "language"), (image, "image"), (prompt, "prompt"), (negative, "negative_prompt"),
            (resolution, "resolution"), (fit, "fit"), (output_format, "output_format"), (frames, "frames"),
            (fps, "fps"), (steps, "steps"), (guidance, "guidance"), (seed, "seed"), (random_seed, "random_seed"),
            (used, "parameters_used"), (gallery, "gallery")]
        buttons = [(generate, "generate"), (cancel, "cancel"), (refresh, "refresh"), (newer, "newer"),
                   (older, "older")]
        relabel_outputs = [title, examples.dataset, *[c for c, _ in labelled],
                           *[b for b, _ in buttons]]

        def relabel(code: str) -> list[Any]:
            t = TEXTS[code]
            return [gr.update(value=f"# {t['title']}\n{t['intro']}"), gr.update(label=t["examples"]),
                    *[gr.update(label=t[key]) for _, key in labelled],
                    *[gr.update(value=t[key]) for _, key in buttons]]

        def render(code: str, seen: dict) -> tuple[str, str]:
            """The status line and the result for what ``shown`` holds, in ``code``."""
            fields = {k: v for k, v in seen.items() if k != "view"}
            view = seen.get("view")
            return (progress_html(code, **fields) if fields else progress_html(code, "idle"),
                    result_html(code, JobResponse.model_validate(view)) if view else "")

        async def usage_now(code: str, request: gr.Request) -> str:
            return usage_html(code, await actions.usage(request)) if sign_in_required else ""

        async def gallery_items(code: str, request: gr.Request, number: int) -> list[Any]:
            """The key's videos and its usage. Outputs: gallery, gallery_params, gallery_page,
            page_label, newer, older, usage_box."""
            found, more = await actions.recent(request, number)
            return [[(str(item.thumbnail), caption(item)) for item in found], [reuse_state(item) for item in found],
                    number, TEXTS[code]["page"].format(page=number + 1), gr.update(interactive=number > 0),
                    gr.update(interactive=more), await usage_now(code, request)]

        gallery_outputs = [gallery, gallery_params, gallery_page, page_label, newer, older, usage_box]

        async def on_load(remembered: str, request: gr.Request) -> list[Any]:
            code = remembered if remembered in LANGUAGES else pick_language(request.headers.get("accept-language"))
            active = await actions.active_job(request)
            listed = await gallery_items(code, request, 0)
            return [code, gr.update(value=code), signed_in_html(code, request.username, sign_in_required),
                    progress_html(code, "idle"), active.id if active else "", *listed, *relabel(code)]

        async def follow(code: str, job: Job, request: gr.Request) -> AsyncIterator[list[Any]]:
            """Outputs: job_id, status, result, used, shown, generate, then the gallery's."""
            keep = gr.update()
            unchanged_gallery = [keep] * len(gallery_outputs)
            following.add(request.session_hash or "")
            try:
                seen: dict[str, Any] = {"status": job.status.value, "job_id": job.id}
                yield [job.id, progress_html(code, **seen), "", None, seen, gr.update(interactive=False),
                       *unchanged_gallery]
                clock = EtaClock()
                async for event, ended in actions.follow(job):
                    if ended is None:
                        eta = event.eta_s
                        if eta is None and event.step is not None and event.total:
                            eta = clock.eta_s(event.step, event.total)
                        seen = {"status": event.type, "step": event.step, "total": event.total, "eta_s": eta,
                                "queue_position": event.queue_position, "job_id": job.id}
                        yield [job.id, progress_html(code, **seen), keep, keep, seen, keep, *unchanged_gallery]
                        continue
                    if ended.status is JobStatus.failed and ended.error is not None:
                        gr.Warning(ended.error.message)
                    progress = ended.progress
                    seen = {"status": ended.status.value, "step": progress.step if progress else None,
                            "total": progress.total if progress else None, "message": ended.message,
                            "job_id": job.id, "view": ended.model_dump(mode="json")}
                    listed = await gallery_items(code, request, 0)
                    status_line, player = render(code, seen)
                    yield ["", status_line, player, parameters_used(ended, job.params), seen,
                           gr.update(interactive=True), *listed]
            finally:
                following.discard(request.session_hash or "")

        follow_outputs = [job_id, status, result, used, shown, generate, *gallery_outputs]

        async def on_resume(code: str, current: str, request: gr.Request) -> AsyncIterator[list[Any]]:
            """After a reload: follow the key's job that is still queued or running."""
            if not current:
                yield [gr.update()] * len(follow_outputs)
                return
            try:
                job = await actions.jobs.get(current, request.username or "")
            except ApiError:
                yield [gr.update()] * len(follow_outputs)
                return
            gr.Info(text(code, "resumed"))
            async for outputs in follow(code, job, request):
                yield outputs

        page.load(on_load, inputs=[remembered], js=REMEMBERED_LANGUAGE_JS,
                  outputs=[language, switch, signed_in, status, job_id, *gallery_outputs, *relabel_outputs],
                  show_progress="hidden").then(on_resume, inputs=[language, job_id], outputs=follow_outputs,
                                               concurrency_limit=None, show_progress="hidden")

        async def on_switch(code: str, seen: dict, page_number: int, request: gr.Request) -> list[Any]:
            status_line, player = render(code, seen)
            return [code, signed_in_html(code, request.username, sign_in_required), status_line, player,
                    TEXTS[code]["page"].format(page=page_number + 1), await usage_now(code, request), *relabel(code)]

        switch.input(on_switch, inputs=[switch, shown, gallery_page], js=REMEMBER_LANGUAGE_JS,
                     outputs=[language, signed_in, status, result, page_label, usage_box, *relabel_outputs],
                     show_progress="hidden")
        usage_timer.tick(usage_now, inputs=[language], outputs=[usage_box], concurrency_limit=None,
                         show_progress="hidden")

        async def on_generate(code: str, image: dict | None, prompt: str, negative: str, resolution: str,
                              frames: float, fps: float, steps: float, guidance: float, seed: float | None,
                              random_seed: bool, fit: str, output_format: str | None,
                              request: gr.Request) -> AsyncIterator[list[Any]]:
            keep = gr.update()
            if (request.session_hash or "") in following:  # a second click while this page's job runs
                gr.Info(text(code, "already_running"))
                yield [keep] * len(follow_outputs)
                return
            following.add(request.session_hash or "")
            try:
                values = FormValues(uploaded_path(image, request.username or ""), prompt, negative, resolution,
                                    frames, fps, steps, guidance, seed, random_seed, fit, output_format)
                job: Job = await actions.submit(values, code, request)
            except Exception as exc:  # noqa: BLE001 - shown as the API's message, never a trace
                following.discard(request.session_hash or "")
                message = describe_error(exc)
                gr.Warning(message)
                seen: dict[str, Any] = {"status": "error", "message": message}
                yield ["", progress_html(code, **seen), keep, keep, seen, gr.update(interactive=True),
                       *[keep] * len(gallery_outputs)]
                return
            async for outputs in follow(code, job, request):
                yield outputs

        # preprocess=False: the raw upload reaches the gateway's own image check, so an unreadable
        # file gets the API's message rather than Gradio's generic error. trigger_mode="once": the
        # browser sends no second click while the first is pending.
        # show_progress="hidden": the status line is the progress; Gradio's would dim it.
        generate.click(on_generate, inputs=[language, *form], preprocess=False, outputs=follow_outputs,
                       concurrency_limit=None, trigger_mode="once", show_progress="hidden")

        async def on_upload(code: str, uploaded: str | None) -> list[Any]:
            problem = actions.upload_problem(uploaded, code) if uploaded else None
            if problem is None:
                return [gr.update(), gr.update()]
            gr.Warning(problem)
            return [None, progress_html(code, "error", message=problem)]

        image.upload(on_upload, inputs=[language, image], outputs=[image, status], concurrency_limit=None,
                     show_progress="hidden")

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

        cancel.click(on_cancel, inputs=[language, job_id], outputs=[status], concurrency_limit=None,
                     show_progress="hidden")

        async def on_page(code: str, number: int, request: gr.Request) -> list[Any]:
            return await gallery_items(code, request, max(0, number))

        refresh.click(on_page, inputs=[language, gallery_page], outputs=gallery_outputs, concurrency_limit=None,
                      show_progress="hidden")
        async def on_newer(code: str, number: int, request: gr.Request) -> list[Any]:
            return await on_page(code, number - 1, request)

        async def on_older(code: str, number: int, request: gr.Request) -> list[Any]:
            return await on_page(code, number + 1, request)

        newer.click(on_newer, inputs=[language, gallery_page], outputs=gallery_outputs, concurrency_limit=None,
                    show_progress="hidden")
        older.click(on_older, inputs=[language, gallery_page], outputs=gallery_outputs, concurrency_limit=None,
                    show_progress="hidden")

        def on_pick(code: str, params: list[dict], selected: gr.SelectData) -> list[Any]:
            index = selected.index if isinstance(selected.index, int) else selected.index[0]
            item = params[index]
            picture = item.get("image")
            if not picture or not Path(picture).is_file():
                gr.Info(text(code, "reuse_image_gone"))
            return [*form_from_params(VideoParams.model_validate(item["params"]), item.get("seed")),
                    picture if picture and Path(picture).is_file() else gr.update()]

        gallery.select(on_pick, inputs=[language, gallery_params], outputs=[*reusable, image])
    return page


def caption(item: GalleryItem) -> str:
    params, result = item.params, item.view.result
    width, height = params.size
    return (f"{params.prompt} · {width}x{height} · {params.num_frames}f · {params.steps} steps · "
            f"seed {result.seed if result else ''}")


def reuse_state(item: GalleryItem) -> dict[str, Any]:
    """What a click on a gallery tile brings back: the parameters, the seed used, the picture."""
    return {"params": item.params.model_dump(mode="json"),
            "seed": item.view.result.seed if item.view.result else None,
            "image": str(item.image) if item.image else None}
