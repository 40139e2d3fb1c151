"""`vlrl serve`: a checkpoint behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

import argparse

from vlrl.commands import fail

SERVE_HELP = """Serve a local checkpoint over an OpenAI-compatible chat-completions API.

Answers come from vlrl's own rollout backend (the code training samples with), so greedy replies equal the
training rollout's on the same prompt. Any OpenAI client works, and `vlrl data build` uses it as a teacher
(teacher.kind=openai teacher.base_url=http://127.0.0.1:8000/v1).

Routes:
  POST /v1/chat/completions  messages (content: a string, or parts {"type": "text", "text": ...} and
                             {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}),
                             max_tokens (or max_completion_tokens; capped by --max-new-tokens), temperature
                             (default 1; 0 = greedy), top_p, n, stop, seed. No streaming.
  GET  /v1/models            the served model's name
  GET  /health               {"status": "ok", "requests_served": n, "requests_failed": m}

The server is offline: images come inline as base64 data URLs; http(s) image URLs are refused (400), and
file:// URLs or local paths are read only with --allow-local-files. Requests are generated one at a time.
A line "serving MODEL on http://HOST:PORT" is printed once the server accepts connections.

  vlrl serve runs/tiny/final --port 8000
  vlrl serve /models/Qwen2.5-VL-3B-Instruct --model-name qwen2.5-vl-3b --max-new-tokens 2048
"""


def run_serve(args: argparse.Namespace) -> int:
    from vlrl.serve import serve

    if args.port < 0 or args.port > 65535:
        return fail(f"--port must be 0-65535, got {args.port}")
    if args.max_prompt_tokens is not None and args.max_prompt_tokens < 1:
        return fail(f"--max-prompt-tokens must be >= 1, got {args.max_prompt_tokens}")
    if args.max_new_tokens < 1:
        return fail(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    from vlrl.models.check import ModelPathError, check_model_path

    try:  # before the weights load: a wrong path or an unsupported model fails at once, with a message
        check_model_path(args.model, key="MODEL")
    except ModelPathError as e:
        return fail(str(e))
    serve(args.model, host=args.host, port=args.port, model_name=args.model_name,
          max_new_tokens=args.max_new_tokens, dtype=args.dtype, device=args.device,
          allow_local_files=args.allow_local_files, quiet=args.quiet,
          min_pixels=args.min_pixels, max_pixels=args.max_pixels, max_prompt_tokens=args.max_prompt_tokens)
    return 0


def add_parsers(sub) -> None:
    serve = sub.add_parser("serve", help="serve a checkpoint over an OpenAI-compatible HTTP API",
                           description=SERVE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("model", metavar="MODEL", help="HF-format checkpoint directory (e.g. runs/tiny/final)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free port, printed)")
    serve.add_argument("--model-name", default="", help="name reported in responses and /v1/models "
                       "(default: the checkpoint directory's name)")
    serve.add_argument("--max-new-tokens", type=int, default=1024,
                       help="cap on tokens generated per completion; larger max_tokens are cut to it (default 1024)")
    serve.add_argument("--max-prompt-tokens", type=int, default=None,
                       help="longest prompt accepted, in tokens (text and image); longer ones get a 400 that states "
                       "the limit (default: the model's context minus --max-new-tokens, at most 8192)")
    serve.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                       help="parameter dtype (default auto: bfloat16 on CUDA, float32 on CPU)")
    serve.add_argument("--device", default="auto", help="torch device, e.g. cpu, cuda, cuda:1 (default auto)")
    serve.add_argument("--allow-local-files", action="store_true",
                       help="also read images from file:// URLs and local paths (off: only data URLs)")
    serve.add_argument("--min-pixels", type=int, default=None,
                       help="smallest image area after resizing (default: the checkpoint processor's)")
    serve.add_argument("--max-pixels", type=int, default=None,
                       help="largest image area after resizing (default: the checkpoint processor's)")
    serve.add_argument("-q", "--quiet", action="store_true", help="no per-request log lines on stderr")
    serve.set_defaults(fn=run_serve)
