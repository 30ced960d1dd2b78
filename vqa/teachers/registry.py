"""Teacher registry: name -> class, with "did you mean" on unknown names."""
from __future__ import annotations

import difflib
from typing import Callable

from vqa.teachers.base import FrameTeacher, TeacherCard

_HOMOGENEOUS: dict[str, Callable[[], FrameTeacher]] = {}


def register_teacher(cls):
    _HOMOGENEOUS[cls.card.name] = cls
    return cls


def _builtin() -> None:
    from vqa.teachers.niqe import NiqeTeacher

    register_teacher(NiqeTeacher)


def teacher_names() -> list[str]:
    if not _HOMOGENEOUS:
        _builtin()
    return sorted(_HOMOGENEOUS)


def create_teacher(name: str) -> FrameTeacher:
    names = teacher_names()
    if name not in _HOMOGENEOUS:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(names)}"
        raise KeyError(f"unknown teacher {name!r}{hint}")
    return _HOMOGENEOUS[name]()


def teacher_cards() -> list[TeacherCard]:
    from vqa.teachers.simulators import SIMULATOR_CARDS

    return [_HOMOGENEOUS[n].card for n in teacher_names()] + list(SIMULATOR_CARDS)
