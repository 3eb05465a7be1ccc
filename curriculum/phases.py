"""The five learning phases of RadiSim-CL, coarse to fine, as a radiologist learns them.

Every training pair is tagged with exactly one phase (its caption's granularity); every
evaluation subtask belongs to the stage with the same number.
"""
from __future__ import annotations

PHASES: tuple[str, ...] = ("modality", "anatomy", "localization", "abnormality", "grading")

#: 1-based index used in manifests (`phase_index`) and MLflow keys (`stage<N>/...`).
PHASE_INDEX: dict[str, int] = {name: i + 1 for i, name in enumerate(PHASES)}

MODALITIES: tuple[str, ...] = ("CT", "MR", "DR")

#: Coarse-to-fine image regions used for localization (stage 3): the quadrant of the image
#: that holds the centroid of an organ's mask. Real datasets derive it from their masks,
#: the phantom from where it drew the organ.
REGIONS: tuple[str, ...] = ("upper left", "upper right", "lower left", "lower right")


def phase_index(name: str) -> int:
    try:
        return PHASE_INDEX[name]
    except KeyError:
        raise ValueError(f"unknown phase {name!r}; expected one of {', '.join(PHASES)}") from None


def region_of(row: float, col: float, height: int, width: int) -> str:
    """Quadrant of a pixel position (row, col) in an image of the given size (viewer's left)."""
    vertical = "upper" if row < height / 2 else "lower"
    horizontal = "left" if col < width / 2 else "right"
    return f"{vertical} {horizontal}"
