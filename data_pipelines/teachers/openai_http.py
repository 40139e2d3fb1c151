"""A teacher behind any OpenAI-compatible chat-completions endpoint (`vlrl serve`, vLLM, a hosted API).

The client itself (concurrency limit, retries with backoff, failed requests as replies with ``error`` set) is
:class:`vlrl.chat_client.OpenAIChatClient`, which the ``judge`` reward shares; this module names it as a
teacher and re-exports what callers used to import from here.
"""

from __future__ import annotations

from vlrl.chat_client import LOOPBACK, OpenAIChatClient, png_data_url

__all__ = ["LOOPBACK", "OpenAITeacher", "png_data_url"]


class OpenAITeacher(OpenAIChatClient):
    """The pipeline's HTTP teacher: ``chat`` posts each request to ``{base_url}/chat/completions``; ``base_url``
    ends in ``/v1``. ``identity`` (``openai:{base_url}:{model}``) enters the pipeline's cache keys."""
