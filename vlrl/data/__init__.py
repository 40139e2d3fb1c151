"""Dataset rows (schema v1) and their encoding into prompt batches."""

from vlrl.data.prompts import PromptBatch, PromptEncoder, build_messages
from vlrl.data.sampler import StepSampler
from vlrl.data.schema import Row, RowError, load_rows, validate_row

__all__ = ["PromptBatch", "PromptEncoder", "build_messages", "StepSampler", "Row", "RowError", "load_rows",
           "validate_row"]
