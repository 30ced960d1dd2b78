"""Weak teachers: homogeneous scorers (NIQE, previous students) and distortion simulators."""
from vqa.teachers.base import FrameTeacher, TeacherCard, TeacherError
from vqa.teachers.registry import create_teacher, register_teacher, teacher_cards, teacher_names

__all__ = [
    "FrameTeacher",
    "TeacherCard",
    "TeacherError",
    "create_teacher",
    "register_teacher",
    "teacher_cards",
    "teacher_names",
]
