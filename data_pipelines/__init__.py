"""Dataset construction: builders that write schema-v1 rows (see DESIGN.md) for ``vlrl`` to train on.

``synthetic/`` holds generated tasks (the tiny CPU demo's shapes); ``sources/``, ``stages/`` and
``teachers/`` hold the real-data pipeline.
"""
