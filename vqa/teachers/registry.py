"""Teacher registry: name -> teacher class, as pyiqa's model registry.

Three ways in:
- built-ins (below);
- third-party packages, through the ``w2s_vqa.teachers`` entry-point group: in their
  pyproject.toml, ``[project.entry-points."w2s_vqa.teachers"] my_teacher = "pkg.mod:MyTeacher"``
  where ``MyTeacher`` subclasses one of vqa.teachers.base's FrameTeacher / ClipTeacher /
  FileTeacher and has a ``card``;
- exported models described by a spec file (params.yaml ``teachers.external``), see external.py.
"""
from __future__ import annotations

import difflib
from importlib.metadata import entry_points

from vqa.teachers.base import Teacher, TeacherCard

ENTRY_POINT_GROUP = "w2s_vqa.teachers"

_TEACHERS: dict[str, type[Teacher]] = {}
_LOADED = False
_BROKEN: dict[str, str] = {}  # entry point name -> why it could not be loaded
_SPECS: dict[str, str] = {}  # spec path -> teacher name


def register_teacher(cls: type[Teacher]) -> type[Teacher]:
    card = getattr(cls, "card", None)
    if not isinstance(card, TeacherCard) or not isinstance(cls, type) or not issubclass(cls, Teacher):
        raise TypeError(f"{cls!r} is not a Teacher subclass with a TeacherCard `card`")
    other = _TEACHERS.get(card.name)
    if other is not None and other is not cls:
        raise ValueError(f"teacher name {card.name!r} is taken by {other.card.origin} ({other.__name__})")
    _TEACHERS[card.name] = cls
    return cls


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from vqa.teachers.brisque import BrisqueTeacher
    from vqa.teachers.niqe import NiqeTeacher
    from vqa.teachers.statistics import STATISTIC_TEACHERS
    from vqa.teachers.viideo import ViideoTeacher

    for cls in (NiqeTeacher, BrisqueTeacher, ViideoTeacher, *STATISTIC_TEACHERS):
        register_teacher(cls)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
            if getattr(getattr(cls, "card", None), "origin", "built-in") == "built-in":
                import dataclasses

                cls.card = dataclasses.replace(cls.card, origin=ep.value)
            register_teacher(cls)
        except Exception as exc:  # a broken plug-in must not hide the others
            _BROKEN[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"


def register_specs(spec_paths: list[str] | tuple[str, ...]) -> list[str]:
    """Register external teachers from spec files (idempotent); returns their names."""
    from vqa.teachers.external import load_external_teacher

    names = []
    for path in spec_paths:
        path = str(path)
        if path not in _SPECS:
            cls = load_external_teacher(path)
            register_teacher(cls)
            _SPECS[path] = cls.card.name
        names.append(_SPECS[path])
    return names


def broken_plugins() -> dict[str, str]:
    _load()
    return dict(_BROKEN)


def teacher_names() -> list[str]:
    _load()
    return sorted(_TEACHERS)


def teacher_class(name: str) -> type[Teacher]:
    names = teacher_names()
    if name not in _TEACHERS:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(names)}"
        if name in _BROKEN:
            hint = f"; its plug-in failed to load: {_BROKEN[name]}"
        raise KeyError(f"unknown teacher {name!r}{hint}")
    return _TEACHERS[name]


def create_teacher(name: str) -> Teacher:
    return teacher_class(name)()


def teacher_cards() -> list[TeacherCard]:
    from vqa.teachers.simulators import SIMULATOR_CARDS

    return [_TEACHERS[n].card for n in teacher_names()] + list(SIMULATOR_CARDS)
