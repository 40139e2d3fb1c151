"""Generated tasks with exact answers: the tiny CPU demo's shapes, and sums / grounding on real handwritten
digits (``digits``). ``data_pipelines.sources`` exposes both as sources."""

from data_pipelines.synthetic.shapes import PALETTE, TASKS, WORDS, build_shapes_dataset, shape_rows

__all__ = ["PALETTE", "TASKS", "WORDS", "build_shapes_dataset", "shape_rows"]
