"""``/outputs/<name>``: the generated files, with Range requests answered per RFC 9110.

Starlette's ``StaticFiles`` resolves names inside the folder only (no traversal) and serves byte
ranges; around it: a range in another unit than bytes is ignored (RFC 9110 section 14.2: the whole
file, 200), and a byte range that is malformed or outside the file is a 416 (RFC 9110 section
15.5.17 covers both) in the API's error shape, with the ``Content-Range: bytes */LENGTH`` that
tells the client the file's length.
"""

from __future__ import annotations

import os

from starlette.datastructures import Headers
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable, Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Receive, Scope, Send

from gateway.errors import error_response


class _IgnoringRange(FileResponse):
    """The whole file, as if the request had no Range header."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(name, value) for name, value in scope["headers"] if name.lower() != b"range"]
        await super().__call__({**scope, "headers": headers}, receive, send)


class OutputFiles(StaticFiles):
    def file_response(self, full_path: PathLike, stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        request = Headers(scope=scope)
        http_range = request.get("range")
        if not isinstance(response, FileResponse) or response.status_code != 200 or http_range is None \
                or scope["method"].upper() not in ("GET", "HEAD"):
            return response
        if_range = request.get("if-range")
        if if_range is not None and not response._should_use_range(if_range):
            return response  # the file changed since: the whole new one, as Starlette does
        unit = http_range.split("=", 1)[0].strip().lower()
        if unit != "bytes":
            return _IgnoringRange(full_path, status_code=status_code, stat_result=stat_result)
        size = stat_result.st_size
        try:
            FileResponse._parse_range_header(http_range, size)
        except (MalformedRangeHeader, RangeNotSatisfiable) as exc:
            why = "is outside the file" if isinstance(exc, RangeNotSatisfiable) else "is malformed"
            return error_response(416, f"the Range {http_range[:60]!r} {why}, which has {size} bytes; ask for "
                                       f"e.g. 'bytes=0-{max(size - 1, 0)}'", {"Content-Range": f"bytes */{size}"})
        return response
