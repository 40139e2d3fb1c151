"""Teachers: chat models (HTTP, local transformers, programmatic) behind one interface (``base.Teacher``).

- :class:`OpenAITeacher` (``openai_http``): any OpenAI-compatible endpoint, e.g. ``vlrl serve``.
- :class:`LocalTeacher` (``local``): a checkpoint run in this process through vlrl's rollout.
- :class:`ProgrammaticTeacher` (``programmatic``): exact captions and chains for synthetic scenes.
"""

from data_pipelines.teachers.base import ChatReply, ChatRequest, Teacher, TeacherError
from data_pipelines.teachers.local import LocalTeacher
from data_pipelines.teachers.openai_http import OpenAITeacher
from data_pipelines.teachers.programmatic import ProgrammaticTeacher

__all__ = ["ChatReply", "ChatRequest", "LocalTeacher", "OpenAITeacher", "ProgrammaticTeacher", "Teacher",
           "TeacherError"]
