"""`vlrl serve MODEL`: an OpenAI-compatible chat-completions server over a local checkpoint.

It is the pipeline's local teacher over HTTP and a way to query a trained checkpoint with any OpenAI client.
Answers come from vlrl's own rollout backend (:class:`vlrl.chat.ChatEngine`), so greedy text equals what
training's rollout produces on the same prompt. Standard library HTTP only (``ThreadingHTTPServer``):
connections are accepted concurrently, generations run one at a time.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health`` (with ``requests_served``, which
pipeline tests read to prove a resumed build repeats no teacher call). Errors are OpenAI-style JSON
``{"error": {"message", "type", "param", "code"}}``: 400 for bad input naming the field, 404 for an unknown
route, 500 for a failure inside the server. The server never reaches the network: images come inline as
base64 data URLs, or as local files when started with ``--allow-local-files``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit
from urllib.request import url2pathname

from PIL import Image

from vlrl.chat import ChatEngine, ChatResult, PromptTooLong, SamplingParams

ROLES = ("system", "user", "assistant")
MAX_N = 64  # completions per request
MAX_BODY_BYTES = 64 * 2**20


class RequestError(ValueError):
    """A client mistake: answered with ``status`` and an OpenAI-style error naming ``param``."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value", status: int = 400):
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


@dataclass
class ParsedChat:
    messages: list[dict]  # content: str or [{"type": "text", "text"} | {"type": "image"}]
    images: list[Image.Image]  # RGB, in image-part order
    params: SamplingParams


# ---- request parsing ------------------------------------------------------------------------------------------
def parse_chat_request(body: object, max_new_tokens: int, allow_local_files: bool = False) -> ParsedChat:
    """Validate a chat-completions JSON body; raises :class:`RequestError` naming the offending field."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object", None, "invalid_json")
    if body.get("stream"):
        raise RequestError("streaming is not supported; send stream=false", "stream")
    messages, images = _parse_messages(body.get("messages"), allow_local_files)
    return ParsedChat(messages, images, _parse_params(body, max_new_tokens))


def _parse_messages(raw: object, allow_local_files: bool) -> tuple[list[dict], list[Image.Image]]:
    if raw is None:
        raise RequestError("'messages' is required", "messages", "missing_field")
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list of {role, content} objects", "messages")
    messages, images = [], []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise RequestError(f"{where} must be an object with 'role' and 'content'", where)
        role = message.get("role")
        if role not in ROLES:
            raise RequestError(f"{where}.role must be one of {list(ROLES)}, got {role!r}", f"{where}.role")
        content = message.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
        elif isinstance(content, list):
            parts = [_parse_part(part, f"{where}.content[{j}]", images, allow_local_files)
                     for j, part in enumerate(content)]
            messages.append({"role": role, "content": parts})
        else:
            raise RequestError(f"{where}.content must be a string or a list of parts", f"{where}.content")
    return messages, images


def _parse_part(part: object, where: str, images: list, allow_local_files: bool) -> dict:
    """One content part -> a template part; an image is decoded and appended to ``images``."""
    if not isinstance(part, dict):
        raise RequestError(f"{where} must be an object with a 'type'", where)
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise RequestError(f"{where}.text must be a string", f"{where}.text")
        return {"type": "text", "text": part["text"]}
    if kind in ("image_url", "image"):
        ref = part.get(kind)
        url = ref.get("url") if isinstance(ref, dict) else ref
        field = f"{where}.{kind}.url" if isinstance(ref, dict) else f"{where}.{kind}"
        if not isinstance(url, str) or not url:
            raise RequestError(f"{field} must be a non-empty string", field)
        images.append(load_image_url(url, field, allow_local_files))
        return {"type": "image"}
    raise RequestError(f"{where}.type must be 'text' or 'image_url', got {kind!r}", f"{where}.type")


def load_image_url(url: str, field: str, allow_local_files: bool = False) -> Image.Image:
    """A data URL (or, when allowed, a file:// URL or local path) -> RGB image. http(s) is refused: offline."""
    if url.startswith("data:"):
        header, comma, payload = url.partition(",")
        if not comma or not header.endswith(";base64") or not header[5:].startswith("image/"):
            raise RequestError(f"{field} must be a base64 image data URL (data:image/png;base64,...)", field)
        try:
            data = base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RequestError(f"{field}: the data URL's base64 payload is invalid ({exc})", field) from exc
        return _open_image(io.BytesIO(data), field)
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        raise RequestError(f"{field}: this server is offline and does not fetch http(s) images; send the image "
                           "inline as a data URL (data:image/png;base64,...)", field, "unsupported_image_url")
    if scheme not in ("", "file"):
        raise RequestError(f"{field}: unsupported URL scheme {scheme!r}; send a data URL", field,
                           "unsupported_image_url")
    if not allow_local_files:
        raise RequestError(f"{field}: local image files are read only when the server was started with "
                           "--allow-local-files; send a data URL", field, "unsupported_image_url")
    path = url2pathname(urlsplit(url).path) if scheme == "file" else url
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise RequestError(f"{field}: cannot read image file {path!r} ({exc.strerror})", field) from exc
    with handle:
        return _open_image(handle, field)


def _open_image(stream, field: str) -> Image.Image:
    try:
        return Image.open(stream).convert("RGB")  # convert() forces the decode, so corrupt data fails here
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, DecompressionBombError)
        raise RequestError(f"{field}: cannot decode the image ({type(exc).__name__}: {exc})", field) from exc


def _parse_params(body: dict, max_new_tokens: int) -> SamplingParams:
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, name, max_new_tokens, 1, None, integer=True)
    stop = body.get("stop")
    if stop is None:
        stop = ()
    elif isinstance(stop, str):
        stop = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stop = tuple(stop)
    else:
        raise RequestError("'stop' must be a string or a list of strings", "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError("'seed' must be an integer", "seed")
    return SamplingParams(
        max_tokens=min(int(max_tokens), max_new_tokens),
        temperature=float(_number(body, "temperature", 1.0, 0.0, None)),
        top_p=float(_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True)),
        n=int(_number(body, "n", 1, 1, MAX_N, integer=True)),
        stop=stop,
        seed=None if seed is None else seed % 2**63,
    )


def _number(body: dict, name: str, default, low, high, integer: bool = False, low_open: bool = False):
    value = body.get(name)
    if value is None:
        return default
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise RequestError(f"'{name}' must be {kind}, got {value!r}", name)
    if value < low or (low_open and value == low) or (high is not None and value > high):
        bounds = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high is not None else "")
        raise RequestError(f"'{name}' must be {bounds}, got {value!r}", name)
    return value


# ---- responses ------------------------------------------------------------------------------------------------
def completion_response(result: ChatResult, model_name: str) -> dict:
    """A ``chat.completion`` object in OpenAI's format."""
    completion_tokens = sum(c.completion_tokens for c in result.completions)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": None,
             "finish_reason": c.finish_reason}
            for i, c in enumerate(result.completions)
        ],
        "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": result.prompt_tokens + completion_tokens},
    }


def error_body(message: str, kind: str, code: str, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class ChatService:
    """The server's state and routing, independent of the HTTP plumbing: ``handle`` maps a request to
    (status, JSON body). Counts chat requests answered (``requests_served``) and refused or failed."""

    def __init__(self, engine: ChatEngine, model_name: str, allow_local_files: bool = False, log=None):
        self.engine, self.model_name, self.allow_local_files = engine, model_name, allow_local_files
        self.started = int(time.time())
        self.requests_served = 0
        self.requests_failed = 0
        self._count_lock = threading.Lock()
        self._log = log or (lambda text: print(text, file=sys.stderr, flush=True))

    def handle(self, method: str, path: str, read_body) -> tuple[int, dict]:
        route = urlsplit(path).path.rstrip("/") or "/"
        routes = {"/health": ("GET", self.health), "/v1/models": ("GET", self.models),
                  "/v1/chat/completions": ("POST", self.chat)}
        if route not in routes:
            return 404, error_body(f"no route {method} {route}; routes: POST /v1/chat/completions, "
                                   "GET /v1/models, GET /health", "invalid_request_error", "not_found")
        want, fn = routes[route]
        if method != want:
            return 405, error_body(f"{route} takes {want}, not {method}", "invalid_request_error",
                                   "method_not_allowed")
        return fn(read_body) if want == "POST" else fn()

    def health(self) -> tuple[int, dict]:
        with self._count_lock:
            return 200, {"status": "ok", "model": self.model_name, "requests_served": self.requests_served,
                         "requests_failed": self.requests_failed}

    def models(self) -> tuple[int, dict]:
        return 200, {"object": "list", "data": [{"id": self.model_name, "object": "model",
                                                 "created": self.started, "owned_by": "vlrl"}]}

    def chat(self, read_body) -> tuple[int, dict]:
        status, body = self._chat(read_body)
        with self._count_lock:
            if status == 200:
                self.requests_served += 1
            else:
                self.requests_failed += 1
        return status, body

    def _chat(self, read_body) -> tuple[int, dict]:
        try:
            raw = read_body()
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise RequestError(f"the request body is not valid JSON ({exc})", None, "invalid_json") from exc
            parsed = parse_chat_request(body, self.engine.max_new_tokens, self.allow_local_files)
            result = self.engine.complete(parsed.messages, parsed.images, parsed.params)
        except RequestError as e:
            return e.status, error_body(e.message, "invalid_request_error", e.code, e.param)
        except PromptTooLong as e:
            return 400, error_body(str(e), "invalid_request_error", "context_length_exceeded", "messages")
        except Exception as e:  # a bug or a device failure: answer, log, keep serving
            self._log(traceback.format_exc())
            return 500, error_body(f"internal error: {type(e).__name__}: {e}", "server_error", "internal_error")
        return 200, completion_response(result, self.model_name)


# ---- HTTP -----------------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    server_version = "vlrl-serve"

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        try:
            status, body = self.server.service.handle(method, self.path, self._read_body)
        except RequestError as e:
            status, body = e.status, error_body(e.message, "invalid_request_error", e.code, e.param)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise RequestError("a Content-Length header is required", None, "length_required", 411)
        if int(length) > MAX_BODY_BYTES:
            raise RequestError(f"the request body is over {MAX_BODY_BYTES} bytes", None, "too_large", 413)
        return self.rfile.read(int(length))

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def make_server(service: ChatService, host: str = "127.0.0.1", port: int = 0, quiet: bool = False) -> _Server:
    """Bind (port 0 picks a free port: read it from ``server.server_address``); call ``serve_forever``."""
    cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6}) if ":" in host else _Server
    server = cls((host, port), _Handler)
    server.service, server.quiet = service, quiet
    return server


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, model_name: str = "", max_new_tokens: int = 1024,
          dtype: str = "auto", device: str = "auto", allow_local_files: bool = False, quiet: bool = False,
          min_pixels: int | None = None, max_pixels: int | None = None, max_prompt_tokens: int | None = None) -> None:
    """Load MODEL, bind, print "serving MODEL on http://HOST:PORT" once ready, and serve until SIGTERM/Ctrl-C."""
    engine = ChatEngine.load(model, device=device, dtype=dtype, max_new_tokens=max_new_tokens,
                             min_pixels=min_pixels, max_pixels=max_pixels, max_prompt_tokens=max_prompt_tokens)
    name = model_name or model.rstrip("/").split("/")[-1]
    server = make_server(ChatService(engine, name, allow_local_files), host, port, quiet)
    bound_host, bound_port = server.server_address[:2]
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    # shutdown() waits for serve_forever to return, so it must run on another thread than the one serving.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"serving {model} on http://{url_host}:{bound_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
