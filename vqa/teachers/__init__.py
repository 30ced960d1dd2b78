"""Weak teachers: homogeneous scorers (NIQE, BRISQUE, VIIDEO, low-level statistics, exported
models, previous students) and heterogeneous distortion simulators."""
from vqa.teachers.base import ClipTeacher, FileTeacher, FrameTeacher, Teacher, TeacherCard, TeacherError
from vqa.teachers.registry import (
    ENTRY_POINT_GROUP,
    create_teacher,
    register_specs,
    register_teacher,
    teacher_cards,
    teacher_class,
    teacher_names,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ClipTeacher",
    "FileTeacher",
    "FrameTeacher",
    "Teacher",
    "TeacherCard",
    "TeacherError",
    "create_teacher",
    "register_specs",
    "register_teacher",
    "teacher_cards",
    "teacher_class",
    "teacher_names",
]
