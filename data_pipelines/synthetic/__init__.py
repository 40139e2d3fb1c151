"""Generated tasks with exact answers, small enough for the tiny CPU demo."""

from data_pipelines.synthetic.shapes import PALETTE, TASKS, WORDS, build_shapes_dataset, shape_rows

__all__ = ["PALETTE", "TASKS", "WORDS", "build_shapes_dataset", "shape_rows"]
