"""The teacher-call cache: a rerun, or a run restarted after a crash, never pays for a reply twice.

The store (one SQLite file per build, keyed by a hash of everything a reply depends on) is
:class:`vlrl.reply_cache.ReplyCache`, which the ``judge`` reward shares; it is re-exported here for the
pipeline's stages.
"""

from vlrl.reply_cache import ReplyCache, image_hash, request_key

__all__ = ["ReplyCache", "image_hash", "request_key"]
