"""Benchmark loaders: label files in three formats, the paper's benchmark registry, and loading.

Label formats (`read_labels`; every reader returns a list of `Label(name, mos, tags, where)`, where
`name` is the video's path relative to the benchmark's videos folder):

- ``csv``:  a header with a file column (``file``, ``filename``, ``video`` or ``name``) and a MOS
  column (``mos`` or ``score``), matched case-insensitively; every other column is kept in `tags`
  (e.g. ``dataset``, the grouping column of ugc-smoke, whose MOS scales differ per dataset).
- ``json``: the W2S-VQA format ``{"annotations": [{"image_id": "<video>", "score": <mos>}, ...]}``
  (a bare list of such objects is accepted too). An `image_id` without a video extension matches
  any video file with that stem.
- ``txt``:  DOVER-style ``labels.txt``, one video per line: ``name, a, b, mos`` (name first, MOS
  last) or exactly ``name, mos``; blank lines and ``#`` comments skipped, whitespace tolerant.

Bad input raises a one-line ``ValueError`` naming the file and the line (or JSON index/key).

Roles: ``in_domain`` and ``ood`` (the paper's split), and ``smoke``: a small real-video sanity
set (ugc-smoke) that is reported on its own and counted in neither average.

Missing videos: a labelled video counts as missing when no file is found for it, or when the path
is not a regular file, is empty (0 bytes) or is not readable. Missing videos never stop loading;
they are listed in `LoadedBenchmark.missing` and the evaluation runs on the rest. Only existence
is checked here (no decoding), so loading a 7000-video benchmark takes a few stat calls per video.

This module imports nothing from the rest of the package.
"""
from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from vqa.video import VIDEO_EXTENSIONS as _VIDEO_EXTENSIONS

ROLES = ("in_domain", "ood", "smoke")
FORMATS = ("auto", "csv", "json", "txt")
FILE_COLUMNS = ("file", "filename", "video", "name")  # in order of preference
MOS_COLUMNS = ("mos", "score")
# what ingest and scoring take, plus raw .yuv, which some benchmarks ship (matched by stem only)
VIDEO_EXTENSIONS = _VIDEO_EXTENSIONS | {".yuv"}
USER_KEYS = ("labels", "videos", "format", "role", "expected_size", "group_column", "optional")


class Label(NamedTuple):
    name: str  # video path relative to the videos folder, as written in the labels file
    mos: float
    tags: dict  # extra columns (csv), middle fields (txt), other keys (json)
    where: str  # "line 7" / "annotations[3]", for messages


# --------------------------------------------------------------------------- label readers


def _did_you_mean(word: str, options, *, key=lambda s: s) -> str:
    opts = list(options)
    close = difflib.get_close_matches(key(word), [key(o) for o in opts], n=1, cutoff=0.6)
    if not close:
        return ""
    hit = next(o for o in opts if key(o) == close[0])
    return f"; did you mean '{hit}'?"


def _parse_mos(path: Path, where: str, key: str, raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"{path}: {where}: {key} {raw!r} is not a number")
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        shown = f"'{raw}'" if isinstance(raw, str) else repr(raw)
        raise ValueError(f"{path}: {where}: {key} {shown} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{path}: {where}: {key} '{raw}' is not a finite number")
    return value


def _read_text(path: Path) -> str:
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            return fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: labels file not found") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _pick_column(header_lc: list[str], candidates) -> int | None:
    for c in candidates:
        if c in header_lc:
            return header_lc.index(c)
    return None


def read_csv_labels(path: str | Path, *, text: str | None = None) -> list[Label]:
    """CSV with a header: a file column, a MOS column, any other columns kept as tags."""
    path = Path(path)
    text = _read_text(path) if text is None else text
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    while header is not None and not any(h.strip() for h in header):
        header = next(reader, None)  # leading blank lines
    if header is None:
        raise ValueError(f"{path}: empty labels file (no header)")
    header = [h.strip() for h in header]
    lc = [h.lower() for h in header]
    fi = _pick_column(lc, FILE_COLUMNS)
    mi = _pick_column(lc, MOS_COLUMNS)
    if fi is None:
        raise ValueError(f"{path}: line {reader.line_num}: header has no file column "
                         f"(one of {', '.join(FILE_COLUMNS)}); got {', '.join(header)}")
    if mi is None:
        raise ValueError(f"{path}: line {reader.line_num}: header has no MOS column "
                         f"(one of {', '.join(MOS_COLUMNS)}); got {', '.join(header)}")
    extra = [(i, h) for i, h in enumerate(header) if i not in (fi, mi)]
    out = []
    for row in reader:
        if not row or not any(c.strip() for c in row):
            continue
        where = f"line {reader.line_num}"
        if len(row) != len(header):
            raise ValueError(f"{path}: {where}: expected {len(header)} fields, got {len(row)}")
        name = row[fi].strip()
        if not name:
            raise ValueError(f"{path}: {where}: empty {header[fi]}")
        mos = _parse_mos(path, where, header[mi], row[mi])
        out.append(Label(name, mos, {h: row[i].strip() for i, h in extra}, where))
    return out


def read_json_labels(path: str | Path, *, text: str | None = None) -> list[Label]:
    """W2S-VQA JSON: {"annotations": [{"image_id": name, "score": mos, ...}, ...]}."""
    path = Path(path)
    text = _read_text(path) if text is None else text
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if isinstance(data, dict):
        if "annotations" not in data:
            raise ValueError(f"{path}: no 'annotations' key (keys: {', '.join(map(str, data)) or 'none'})")
        anns, prefix = data["annotations"], "annotations"
    elif isinstance(data, list):
        anns, prefix = data, ""
    else:
        raise ValueError(f"{path}: expected an object with 'annotations', got {type(data).__name__}")
    if not isinstance(anns, list):
        raise ValueError(f"{path}: 'annotations' is a {type(anns).__name__}, expected a list")
    out = []
    for i, ann in enumerate(anns):
        where = f"{prefix}[{i}]"
        if not isinstance(ann, dict):
            raise ValueError(f"{path}: {where}: expected an object, got {type(ann).__name__}")
        for key in ("image_id", "score"):
            if key not in ann:
                raise ValueError(f"{path}: {where}: missing key '{key}'")
        name = ann["image_id"]
        if isinstance(name, bool) or not isinstance(name, (str, int)) or not str(name).strip():
            raise ValueError(f"{path}: {where}: image_id {name!r} is not a video name")
        mos = _parse_mos(path, where, "score", ann["score"])
        tags = {k: v for k, v in ann.items() if k not in ("image_id", "score")}
        out.append(Label(str(name).strip(), mos, tags, where))
    return out


def read_txt_labels(path: str | Path, *, text: str | None = None) -> list[Label]:
    """DOVER-style labels.txt: `name, a, b, mos` or `name, mos` per line; '#' comments."""
    path = Path(path)
    text = _read_text(path) if text is None else text
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        where = f"line {n}"
        fields = [f.strip() for f in s.split(",")]
        if len(fields) not in (2, 4):
            raise ValueError(f"{path}: {where}: expected 'name, a, b, mos' or 'name, mos', "
                             f"got {len(fields)} fields")
        if not fields[0]:
            raise ValueError(f"{path}: {where}: empty video name")
        mos = _parse_mos(path, where, "mos", fields[-1])
        tags = {"a": fields[1], "b": fields[2]} if len(fields) == 4 else {}
        out.append(Label(fields[0], mos, tags, where))
    return out


_READERS = {"csv": read_csv_labels, "json": read_json_labels, "txt": read_txt_labels}


def detect_format(path: str | Path, text: str) -> str:
    """csv/json/txt from the suffix, else from the content. A .txt whose first line is a header
    with file and MOS columns is read as csv."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix == ".csv":
        return "csv"
    first = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")), "")
    if suffix != ".txt" and first[:1] in ("{", "["):
        return "json"
    cols = [c.strip().lower() for c in next(csv.reader([first]), [])] if first else []
    if any(c in FILE_COLUMNS for c in cols) and any(c in MOS_COLUMNS for c in cols):
        return "csv"
    return "txt"


def read_labels(path: str | Path, format: str = "auto") -> list[Label]:
    """Read a labels file in `format` (auto, csv, json, txt) -> [Label(name, mos, tags, where)]."""
    path = Path(path)
    if format not in FORMATS:
        raise ValueError(f"{path}: unknown labels format '{format}' (one of {', '.join(FORMATS)})"
                         + _did_you_mean(format, FORMATS))
    text = _read_text(path)
    fmt = detect_format(path, text) if format == "auto" else format
    return _READERS[fmt](path, text=text)


# --------------------------------------------------------------------------- specs & registry


def normalize_name(name: str) -> str:
    """Benchmark names compare case-insensitively, ignoring '-', '_' and spaces."""
    return "".join(ch for ch in name.lower() if ch not in "-_ ")


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    role: str  # one of ROLES
    expected_size: int | None = None  # number of labelled videos in the published set
    labels: Path | None = None
    videos: Path | None = None  # folder the labels' names are relative to
    format: str = "auto"  # one of FORMATS
    group_column: str | None = None  # csv column grouping videos (MOS scales differ); else one group
    optional: bool = False  # the pipeline skips it, saying so, when its labels file is absent

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"benchmark name {self.name!r} is empty")
        if self.role not in ROLES:
            raise ValueError(f"{self.name}: unknown role '{self.role}' (one of {', '.join(ROLES)})"
                             + _did_you_mean(str(self.role), ROLES))
        if self.format not in FORMATS:
            raise ValueError(f"{self.name}: unknown format '{self.format}' (one of {', '.join(FORMATS)})"
                             + _did_you_mean(str(self.format), FORMATS))
        es = self.expected_size
        if es is not None and (isinstance(es, bool) or not isinstance(es, int) or es < 0):
            raise ValueError(f"{self.name}: expected_size {es!r} is not a non-negative integer")
        for key in ("labels", "videos"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, key, Path(value))


_PAPER = [
    ("LSVQ-test", "in_domain", 7182),
    ("LSVQ-1080p", "in_domain", 3573),
    ("KoNViD-1k", "in_domain", 1200),
    ("LIVE-VQC", "in_domain", 585),
    ("YouTube-UGC", "in_domain", 1020),
    ("LIVE-YT-Gaming", "ood", 600),
    ("CGVDS", "ood", 357),
    ("LIVE-YT-HFR", "ood", 480),
    ("Waterloo-IVC-4K", "ood", 1200),
    ("KVQ", "ood", 2926),
]
#: The paper's ten benchmarks (role, published size); `labels`/`videos` are supplied locally.
PAPER_BENCHMARKS: dict[str, BenchmarkSpec] = {n: BenchmarkSpec(n, r, s) for n, r, s in _PAPER}


def ugc_smoke_spec(root: str | Path) -> BenchmarkSpec:
    """The ugc-smoke set: root/labels.csv, file paths relative to root, grouped by `dataset`."""
    root = Path(root)
    return BenchmarkSpec("ugc-smoke", "smoke", None, root / "labels.csv", root, "csv", "dataset")


def resolve_benchmarks(configured: dict[str, dict] | None, *, base: str | Path | None = None,
                       where: str = "evaluation.benchmarks") -> list[BenchmarkSpec]:
    """Merge user entries {name: {labels, videos?, format?, role?, expected_size?, group_column?}}
    with PAPER_BENCHMARKS. Returns only the configured benchmarks (paper order, then extras in
    config order). `videos` defaults to the labels file's folder; relative paths are resolved
    against `base`. Extra benchmarks need a `role`. Errors are one line naming `where.name.key`."""
    base = Path(base) if base is not None else None
    by_norm = {normalize_name(n): n for n in PAPER_BENCHMARKS}
    paper, extra = {}, []
    for name, entry in (configured or {}).items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: benchmark name {name!r} is not a non-empty string")
        at = f"{where}.{name}"
        entry = {} if entry is None else entry
        if not isinstance(entry, dict):
            raise ValueError(f"{at}: expected a mapping of {', '.join(USER_KEYS)}, got {type(entry).__name__}")
        for key in entry:
            if key not in USER_KEYS:
                raise ValueError(f"{at}: unknown key '{key}' (one of {', '.join(USER_KEYS)})"
                                 + _did_you_mean(str(key), USER_KEYS))
        predeclared = PAPER_BENCHMARKS.get(name)
        if predeclared is None:
            norm = normalize_name(name)
            if norm in by_norm:  # same benchmark spelled differently: never a new one
                raise ValueError(f"{at}: unknown benchmark '{name}'; did you mean '{by_norm[norm]}'?")
            if "role" not in entry:
                close = difflib.get_close_matches(norm, list(by_norm), n=1, cutoff=0.75)
                hint = f"did you mean '{by_norm[close[0]]}'? " if close else ""
                raise ValueError(f"{at}: unknown benchmark '{name}'; {hint}an extra benchmark needs "
                                 f"'role' (one of {', '.join(ROLES)})")
        if "role" in entry and entry["role"] not in ROLES:
            raise ValueError(f"{at}.role: unknown role '{entry['role']}' (one of {', '.join(ROLES)})"
                             + _did_you_mean(str(entry["role"]), ROLES))
        if "format" in entry and entry["format"] not in FORMATS:
            raise ValueError(f"{at}.format: unknown format '{entry['format']}' (one of {', '.join(FORMATS)})"
                             + _did_you_mean(str(entry["format"]), FORMATS))
        if not entry.get("labels"):
            raise ValueError(f"{at}.labels: required (path to the labels file)")

        def path_of(key):
            value = entry.get(key)
            if value is None:
                return None
            if not isinstance(value, (str, os.PathLike)):
                raise ValueError(f"{at}.{key}: {value!r} is not a path")
            p = Path(value).expanduser()
            return base / p if base is not None and not p.is_absolute() else p

        labels = path_of("labels")
        videos = path_of("videos") or labels.parent
        if "optional" in entry and not isinstance(entry["optional"], bool):
            raise ValueError(f"{at}.optional: expected true or false, got {entry['optional']!r}")
        changes = {k: entry[k] for k in ("role", "format", "expected_size", "group_column", "optional") if k in entry}
        try:
            if predeclared is not None:
                spec = replace(predeclared, labels=labels, videos=videos, **changes)
            else:
                spec = BenchmarkSpec(name=name, labels=labels, videos=videos, **changes)
        except ValueError as exc:  # e.g. a bad expected_size
            raise ValueError(f"{where}.{exc}") from None
        if predeclared is not None:
            paper[name] = spec
        else:
            extra.append(spec)
    return [paper[n] for n in PAPER_BENCHMARKS if n in paper] + extra


# --------------------------------------------------------------------------- loading


@dataclass
class BenchmarkItem:
    name: str  # as listed in the labels file
    path: Path  # the video file found for it (videos folder / name, or a stem match)
    mos: float
    group: str
    tags: dict = field(default_factory=dict)


@dataclass
class LoadedBenchmark:
    spec: BenchmarkSpec
    items: list[BenchmarkItem]
    missing: list[str]  # names listed in the labels with no readable file
    missing_reasons: dict[str, str]  # name -> "not found" / "empty file (0 bytes)" / ...
    n_labelled: int  # distinct names in the labels file
    warnings: list[str] = field(default_factory=list)  # size mismatch, duplicates, ambiguous stems

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def n_found(self) -> int:
        return len(self.items)

    @property
    def n_missing(self) -> int:
        return len(self.missing)

    @property
    def groups(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for it in self.items:
            out[it.group] = out.get(it.group, 0) + 1
        return out

    def summary(self, max_names: int = 5) -> str:
        """One line: "KoNViD-1k: 3 of 1200 videos missing (a.mp4, b.mp4, c.mp4)"."""
        if not self.missing:
            return f"{self.name}: 0 of {self.n_labelled} videos missing"
        shown = ", ".join(self.missing[:max_names])
        more = f", ... {self.n_missing - max_names} more" if self.n_missing > max_names else ""
        return f"{self.name}: {self.n_missing} of {self.n_labelled} videos missing ({shown}{more})"


def _check_file(path: Path) -> str | None:
    """None if `path` is a readable, non-empty regular file, else why not."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "not found"
    except OSError as exc:
        return f"cannot stat ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    if not os.access(path, os.R_OK):
        return "not readable"
    return None


class _StemIndex:
    """stem -> video files, per directory, listed once on first use."""

    def __init__(self):
        self._dirs: dict[Path, dict[str, list[Path]]] = {}

    def lookup(self, path: Path) -> list[Path]:
        parent = path.parent
        if parent not in self._dirs:
            idx: dict[str, list[Path]] = {}
            try:
                with os.scandir(parent) as it:
                    for entry in it:
                        p = Path(entry.path)
                        if p.suffix.lower() in VIDEO_EXTENSIONS:
                            idx.setdefault(p.stem, []).append(p)
            except OSError:
                pass
            self._dirs[parent] = {k: sorted(v) for k, v in idx.items()}
        return self._dirs[parent].get(path.name, [])


def load_benchmark(spec: BenchmarkSpec) -> LoadedBenchmark:
    """Read the labels and find each video under spec.videos; missing ones are reported, not fatal.
    A name without a video extension (e.g. a W2S-VQA image_id) matches any video with that stem."""
    if spec.labels is None:
        raise ValueError(f"{spec.name}: no labels path configured")
    videos = spec.videos if spec.videos is not None else spec.labels.parent
    if not videos.is_dir():
        raise FileNotFoundError(f"{spec.name}: videos folder {videos} not found")
    labels = read_labels(spec.labels, spec.format)
    if spec.group_column is not None and labels and spec.group_column not in labels[0].tags:
        raise ValueError(f"{spec.labels}: group column '{spec.group_column}' not found "
                         f"(columns/keys: {', '.join(labels[0].tags) or 'none'})")
    items, missing, reasons, warnings = [], [], {}, []
    seen: dict[str, str] = {}
    duplicates: list[str] = []
    stems = _StemIndex()
    for lab in labels:
        if lab.name in seen:
            duplicates.append(f"{lab.name} at {lab.where} (first at {seen[lab.name]})")
            continue
        seen[lab.name] = lab.where
        path = videos / lab.name
        why = _check_file(path)
        if why == "not found" and path.suffix.lower() not in VIDEO_EXTENSIONS:
            matches = stems.lookup(path)
            if matches:
                usable = [m for m in matches if _check_file(m) is None]
                path = (usable or matches)[0]
                why = _check_file(path)
                if len(matches) > 1:
                    warnings.append(f"{spec.name}: '{lab.name}' matches {len(matches)} files "
                                    f"({', '.join(m.name for m in matches)}); using {path.name}")
        if why is not None:
            missing.append(lab.name)
            reasons[lab.name] = why
            continue
        group = spec.name
        if spec.group_column is not None:
            group = str(lab.tags.get(spec.group_column) or "").strip() or spec.name
        items.append(BenchmarkItem(lab.name, path, lab.mos, group, dict(lab.tags)))
    if duplicates:
        warnings.append(f"{spec.name}: {len(duplicates)} duplicate labels ignored "
                        f"(first: {duplicates[0]})")
    n = len(seen)
    if spec.expected_size is not None and n != spec.expected_size:
        warnings.insert(0, f"{spec.name}: {n} labelled videos, expected {spec.expected_size}")
    return LoadedBenchmark(spec, items, missing, reasons, n, warnings)
