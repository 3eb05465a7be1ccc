"""Deterministic phantom radiology: the built-in, offline, SYNTHETIC dataset of RadiSim-CL.

Every image is a pure function of ``(seed, index, size)`` (and a cohort name for disease-cohort
cases). A case draws one (modality, anatomy) combination, a view, a finding (about half are "none"),
lays out organs and lesions as ellipses and polar-modulated masses in anatomical coordinates, places
the picture in the field with random flips and a translation (so that organ quadrants vary and stay
balanced), paints tissues with the modality's intensity table and finishes with the modality's
physics. Captions are written at the five curriculum granularities.

The data are labelled synthetic in the manifest (`synthetic` column) and the data card, never in
the captions, which stay clinical. What the data are and are not: docs/phantom.md.

Modules, in the order a case passes through them:
- `catalog`    the vocabulary as data: combos, cohorts, subtypes, grades, modality words
- `scene`      shapes, ops, plans, lesion helpers, the builder registry
- `anatomies`  one scene builder per (modality, anatomy): head, knee, abdomen, chest
- `placement`  flips and shifts that put the target organ in a chosen quadrant; mask quadrants
- `canvas`     tissue intensities and the painter that records organ and lesion masks
- `physics`    texture, noise and each modality's finish (CT, MR, DR)
- `captions`   the five captions of a case
- `case`       `render_case` / `generate_case`: one case from (seed, index, size, cohort)
- `writer`     `write_phantom_dataset`: Parquet shards and the data card
"""
from __future__ import annotations

from .captions import _FINDING_PHRASE, _MOD_SHORT, _NEGATED_PHRASE, _PART, REGION_WORDS
from .case import PhantomCase, generate_case, render_case
from .catalog import (COHORT_INDEX_OFFSET, COHORTS, COMBOS, EVAL_INDEX_OFFSET, GRADES, MODALITY_WORDS,
                      SUBTYPES, Combo, catalog)
from .placement import mask_region
from .scene import LESION_SCALE
from .writer import write_phantom_dataset

__all__ = [
    "COHORTS", "COHORT_INDEX_OFFSET", "COMBOS", "Combo", "EVAL_INDEX_OFFSET", "GRADES", "LESION_SCALE",
    "MODALITY_WORDS", "PhantomCase", "REGION_WORDS", "SUBTYPES", "catalog", "generate_case", "mask_region",
    "render_case", "write_phantom_dataset",
    # caption vocabularies that the counterfactual tests read
    "_FINDING_PHRASE", "_MOD_SHORT", "_NEGATED_PHRASE", "_PART",
]
