"""Routes of the OpenAI-compatible Videos API: thin handlers over ``VideoServing``, with the native
API's dependencies (signing, auth, rate budgets, Cancel-After, Idempotency-Key)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.datastructures import UploadFile

from gateway.api.deps import App, BaseUrl, CancelAfter, RateLimitedCaller, ReadCaller
from gateway.edge.signing import require_signature
from gateway.openai.errors import InvalidParamError, responses_v1
from gateway.openai.protocol import Model, ModelList, RemixRequest, Video, VideoCreateRequest, VideoDeleted, VideoList
from gateway.openai.serving import VideoServing

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_signature)])
IdempotencyKey = Annotated[str | None, Header(
    description="A retried create with the same key and body answers the first video instead of making another.")]


def serving(app: App) -> VideoServing:
    return VideoServing(app)


Serving = Annotated[VideoServing, Depends(serving)]


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """A JSON schema with its local ``$ref``s replaced by what they name (openapi_extra has no components)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
        return {key: _inline(value, defs) for key, value in schema.items() if key != "$defs"}
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    return schema


_JSON_SCHEMA = VideoCreateRequest.model_json_schema()
_CREATE_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": _inline(_JSON_SCHEMA, _JSON_SCHEMA.get("$defs", {}))},
    "multipart/form-data": {"schema": {"type": "object", "required": ["prompt", "input_reference"], "properties": {
        "input_reference": {"type": "string", "format": "binary", "description": "The image file."},
        "prompt": {"type": "string"}, "model": {"type": "string"}, "size": {"type": "string"},
        "seconds": {"type": "string"}},
        "additionalProperties": {"type": "string"},
        "description": "The JSON body's fields as form fields; input_reference as a file part."}}}}}


async def create_fields(request: Request, max_bytes: int) -> tuple[dict[str, Any], bytes | None]:
    """The create body's fields and the uploaded image, from JSON or multipart/form-data (where the SDKs
    write ``input_reference[image_url]`` for a nested field and ``webhook_events[]`` for a list)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            fields = json.loads(await request.body())
        except ValueError:
            raise InvalidParamError("the body is not valid JSON", None) from None
        if not isinstance(fields, dict):
            raise InvalidParamError("the body must be a JSON object", None)
        return fields, None
    if content_type != "multipart/form-data":
        raise InvalidParamError("send the video request as application/json or multipart/form-data", None)
    form = await request.form(max_part_size=max_bytes)
    fields, upload = {}, None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name != "input_reference":
                raise InvalidParamError(f"{name}: only input_reference may be a file", name)
            upload = await value.read()
        elif name.endswith("[]"):
            fields.setdefault(name[:-2], []).append(value)
        elif "[" in name and name.endswith("]"):
            outer, _, inner = name[:-1].partition("[")
            nested = fields.setdefault(outer, {})
            if isinstance(nested, dict):
                nested[inner] = value
        else:
            fields[name] = value
    return fields, upload


@router.post("/videos", response_model=Video, openapi_extra=_CREATE_BODY, responses=responses_v1(404, 409))
async def create_video(request: Request, app: App, videos: Serving, base_url: BaseUrl, caller: RateLimitedCaller,
                       cancel_after_s: CancelAfter, idempotency_key: IdempotencyKey = None) -> Video:
    """Queue a video from an image and a prompt (OpenAI's Videos API); poll it, or give a callback_url."""
    fields, upload = await create_fields(request, app.settings.max_body_bytes)
    return await videos.create(fields, upload, caller, base_url, idempotency_key, cancel_after_s)


@router.get("/videos", response_model=VideoList, responses=responses_v1())
async def list_videos(videos: Serving, caller: ReadCaller, after: Annotated[str | None, Query()] = None,
                      limit: Annotated[int, Query(ge=1, le=100)] = 20,
                      order: Annotated[Literal["asc", "desc"], Query()] = "desc") -> VideoList:
    """The caller's videos, newest first (order=asc: oldest first); pass last_id as after for the next page."""
    return await videos.list(caller, after, limit, order)


@router.get("/videos/{video_id}", response_model=Video, responses=responses_v1(404))
async def retrieve_video(video_id: str, videos: Serving, caller: ReadCaller) -> Video:
    """The video's status and progress (percent of denoising steps)."""
    return await videos.get(video_id, caller)


@router.delete("/videos/{video_id}", response_model=VideoDeleted, responses=responses_v1(404, 409))
async def delete_video(video_id: str, videos: Serving, caller: ReadCaller) -> VideoDeleted:
    """Delete the video and its files; one still queued or running is cancelled first."""
    return await videos.delete(video_id, caller)


@router.get("/videos/{video_id}/content", response_class=Response, responses={
    200: {"content": {"video/mp4": {}, "image/jpeg": {}}, "description": "The file."}, **responses_v1(404, 409)})
async def video_content(video_id: str, videos: Serving, caller: ReadCaller,
                        variant: Annotated[Literal["video", "thumbnail", "spritesheet"], Query()] = "video"
                        ) -> Response:
    """The video file (in its output_format), its thumbnail (the first frame, JPEG) or a spritesheet
    (every frame in one JPEG grid)."""
    content = await videos.content(video_id, caller, variant)
    if content.path is not None:
        return FileResponse(content.path, media_type=content.media_type)
    return Response(content.data, media_type=content.media_type)


@router.post("/videos/{video_id}/remix", response_model=Video, responses=responses_v1(404, 409))
async def remix_video(video_id: str, body: RemixRequest, videos: Serving, base_url: BaseUrl,
                      caller: RateLimitedCaller, idempotency_key: IdempotencyKey = None) -> Video:
    """A new video from the same image and settings (and seed) with a new prompt."""
    return await videos.remix(video_id, body, caller, base_url, idempotency_key)


@router.get("/models", response_model=ModelList, responses=responses_v1())
async def list_models(videos: Serving, caller: ReadCaller) -> ModelList:
    """The served model, with the aliases accepted as model."""
    return videos.models()


@router.get("/models/{model_id:path}", response_model=Model, responses=responses_v1(404))
async def retrieve_model(model_id: str, videos: Serving, caller: ReadCaller) -> Model:
    """The served model by its id or an alias."""
    return videos.model(model_id)
