"""Sources: readers that turn annotations on disk into schema-v1 rows, reporting every row they cannot use.

One module per kind — ``folder``, ``hf``, ``coco``, ``refcoco``, ``vlaa``, ``orsta`` and the generated
``shapes`` / ``digits`` (``synthetic``) — each a ``load_<kind>(options, name) -> SourceResult`` with a typed
options dataclass. :func:`load_source` reads one config section ``{kind, name, params}``
(``registry``). Shared pieces: ``annotations`` (JSON/JSONL/CSV/parquet reading, :class:`SourceError`),
``images`` (decoding to RGB), ``answer_boxes`` (boxes checked and written as answers), ``columns``
(column-mapped records), ``rows`` (row construction, unique ids).
"""

from data_pipelines.sources.annotations import SourceError, SourceFileNotFound
from data_pipelines.sources.registry import SOURCES, SourceSpec, build_options, load_source

__all__ = ["SOURCES", "SourceError", "SourceFileNotFound", "SourceSpec", "build_options", "load_source"]
