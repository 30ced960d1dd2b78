"""Corpus: ingest a folder of videos into a content-addressed manifest."""
from vqa.corpus.ingest import VIDEO_EXTENSIONS, IngestReport, ingest, load_manifest, resolve

__all__ = ["VIDEO_EXTENSIONS", "IngestReport", "ingest", "load_manifest", "resolve"]
