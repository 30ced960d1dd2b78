"""w2s-vqa: weak-to-strong video quality assessment."""
__version__ = "0.1.0"
