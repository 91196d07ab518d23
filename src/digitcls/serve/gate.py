"""Turn the body of ``POST /predict`` into one checked model input, or a 4xx JSON error naming the problem.

This runs in the HTTP process, before LitServe queues the request for a model worker: LitServe decodes a
whole batch at once, and one bad request raising in ``decode_request`` would fail every good request
batched with it. Here a bad request is answered alone and never reaches the model; the checks run cheapest
first (body size, the body's form, the header's pixel count, decoding as ``predict`` does). What is forwarded
is the model-sized uint8 input (a few KB), base64 in a JSON body.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass

import torch
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digitcls.data.images import TooManyPixelsError, load_input, to_chw_tensor
from digitcls.errors import BadImageError
from digitcls.preprocess import PREPROCESSORS

log = logging.getLogger(__name__)

USAGE = (
    'send one image as a multipart/form-data file (any field name; "image" picks it among several files; '
    'optional field "preprocess": none|mnist), or JSON {"image": "<base64>", "preprocess": "none|mnist"}'
)
MAX_FILE_PARTS = 8  # more files in one multipart body are refused while parsing it


class RequestError(Exception):
    """``RequestError(status, message)``: a request the client can fix, answered ``{"detail": message}``."""


@dataclass(frozen=True)
class Upload:
    data: bytes
    name: str  # the client's file name, or "the image": only ever used to name the image in errors
    preprocess: str


async def read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes:
    """The whole request body, refused as soon as it is known to exceed ``max_bytes``."""
    too_large = f"the request body is over max_request_bytes={max_bytes:,} bytes; send a smaller image."
    declared = dict(scope["headers"]).get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, too_large)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError(400, "the client disconnected before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(413, too_large)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def parse_upload(scope: Scope, body: bytes, receive: Receive) -> Upload:
    """The image bytes, its name and the preprocessing asked for, from a multipart or JSON body."""
    if not body:
        raise RequestError(400, f"the request body is empty; {USAGE}.")
    content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1").lower()
    if content_type.startswith("multipart/form-data"):
        return await _parse_multipart(scope, body, receive)
    if content_type.startswith("application/json"):
        return _parse_json(body)
    shown = content_type[:100] or "none"
    raise RequestError(415, f"Content-Type {shown} is not supported; {USAGE}.")


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``body`` once, then passes on what the client sends (a disconnect)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


async def _parse_multipart(scope: Scope, body: bytes, receive: Receive) -> Upload:
    try:
        form = await Request(scope, replaying(body, receive)).form(max_files=MAX_FILE_PARTS, max_fields=4)
    except Exception as error:  # starlette reports a malformed or oversized form in its own exception types
        detail = getattr(error, "detail", error)
        raise RequestError(400, f"the multipart body could not be parsed ({detail}); {USAGE}.") from None
    try:
        # the form's one file, whatever its field is called (`curl -F file=@3.png` works); among several,
        # the one in field "image"
        files = [(name, value) for name, value in form.multi_items() if isinstance(value, UploadFile)]
        candidates = [value for name, value in files if name == "image"] or [value for _, value in files]
        if not files:
            raise RequestError(400, f"the multipart body has no file; {USAGE}.")
        if len(candidates) > 1:
            fields = ", ".join(f'"{name}"' for name, _ in files)
            choose = 'send one file, or name only the one to read "image"'
            raise RequestError(400, f"the multipart body has {len(files)} files (fields {fields}); {choose}.")
        preprocess = _checked_preprocess(form.get("preprocess", "none"))
        return Upload(await candidates[0].read(), candidates[0].filename or "the image", preprocess)
    finally:
        await form.close()


def _parse_json(body: bytes) -> Upload:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(400, f"the body is not valid JSON ({error}); {USAGE}.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("image"), str):
        raise RequestError(400, f'the JSON body has no string field "image"; {USAGE}.')
    image = payload["image"]
    if image.startswith("data:") and "," in image:  # a data URL, as a browser's FileReader gives
        image = image.split(",", 1)[1]
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, 'the JSON field "image" is not valid base64.') from None
    return Upload(data, "the image", _checked_preprocess(payload.get("preprocess", "none")))


def _checked_preprocess(value: object) -> str:
    if value not in PREPROCESSORS:
        raise RequestError(400, f"preprocess: unknown value {value!r}; valid: {', '.join(PREPROCESSORS)}.")
    return str(value)


def model_input(upload: Upload, img_size: tuple[int, int], max_pixels: int) -> torch.Tensor:
    """The 3 x H x W uint8 input ``predict`` would make from the same file (decode, preprocess, resize)."""
    if not upload.data:
        raise RequestError(400, f"{upload.name} is empty (0 bytes); {USAGE}.")
    try:
        image = load_input(upload.data, img_size, PREPROCESSORS[upload.preprocess], max_pixels, upload.name)
    except TooManyPixelsError as error:
        raise RequestError(413, str(error)) from None
    except BadImageError as error:
        raise RequestError(415, str(error)) from None
    return to_chw_tensor(image)


def encode_input(pixels: torch.Tensor) -> bytes:
    """The JSON body LitServe forwards to ``DigitAPI.decode_request``."""
    return json.dumps({"pixels": base64.b64encode(pixels.numpy().tobytes()).decode("ascii")}).encode()


def decode_input(payload: dict, img_size: tuple[int, int]) -> torch.Tensor:
    """``encode_input`` reversed: the 3 x H x W uint8 tensor."""
    pixels = bytearray(base64.b64decode(payload["pixels"]))  # writable: torch.frombuffer shares it
    return torch.frombuffer(pixels, dtype=torch.uint8).reshape(3, *img_size)


class PredictGate:
    """ASGI middleware: every ``POST /predict`` is checked and turned into a model input here."""

    def __init__(
        self, app: ASGIApp, img_size: tuple[int, int], max_request_bytes: int, max_image_pixels: int
    ) -> None:
        self.app = app
        self.img_size = img_size
        self.max_request_bytes = max_request_bytes
        self.max_image_pixels = max_image_pixels

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self.max_request_bytes)
            upload = await parse_upload(scope, body, receive)
            pixels = await run_in_threadpool(model_input, upload, self.img_size, self.max_image_pixels)
        except RequestError as error:
            status, message = error.args
            await JSONResponse({"detail": message}, status_code=status)(scope, receive, send)
            return
        except Exception:  # a bug, not the client's fault: logged here, never sent (no traceback, no paths)
            log.exception("unexpected error while reading a /predict request")
            await JSONResponse({"detail": "internal error"}, status_code=500)(scope, receive, send)
            return
        forwarded = encode_input(pixels)
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(forwarded)).encode())]
        await self.app({**scope, "headers": headers}, replaying(forwarded, receive), send)
