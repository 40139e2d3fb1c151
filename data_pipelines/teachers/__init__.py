"""Teachers: chat models (HTTP, local transformers, programmatic) behind one interface (``base.Teacher``)."""

from data_pipelines.teachers.base import ChatReply, ChatRequest, Teacher, TeacherError

__all__ = ["ChatReply", "ChatRequest", "Teacher", "TeacherError"]
