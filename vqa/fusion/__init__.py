"""Teacher scores and simulator levels -> labelled pairs at five preference levels."""
from vqa.fusion.pairs import (
    HOMOGENEOUS,
    LEVEL_NAMES,
    PAIR_KINDS,
    Pair,
    homogeneous_pairs,
    normalise_scores,
    preference_level,
    random_pairs,
    read_pairs,
    simulator_pairs,
    write_pairs,
)
from vqa.fusion.rules import RULES, Labeller, label_pair, level_shares

__all__ = [
    "HOMOGENEOUS",
    "LEVEL_NAMES",
    "PAIR_KINDS",
    "Pair",
    "RULES",
    "Labeller",
    "homogeneous_pairs",
    "label_pair",
    "level_shares",
    "normalise_scores",
    "preference_level",
    "random_pairs",
    "read_pairs",
    "simulator_pairs",
    "write_pairs",
]
