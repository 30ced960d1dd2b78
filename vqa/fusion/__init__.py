"""Teacher scores and simulator levels -> labelled pairs at five preference levels."""
from vqa.fusion.pairs import (
    LEVEL_NAMES,
    Pair,
    homogeneous_pairs,
    normalise_scores,
    preference_level,
    read_pairs,
    simulator_pairs,
    write_pairs,
)

__all__ = [
    "LEVEL_NAMES",
    "Pair",
    "homogeneous_pairs",
    "normalise_scores",
    "preference_level",
    "read_pairs",
    "simulator_pairs",
    "write_pairs",
]
