"""Dataset adapters for the zero-shot subtasks, keyed by name (a subtask's `dataset`, or "phantom").

Contract (see `base.py`): an adapter is registered with `@register_adapter(name)` and called as
`adapter(root, subtask, **options) -> Examples`; a missing root raises `DatasetNotFoundError` naming
what was expected where.
"""
from .base import (
    DatasetNotFoundError,
    Examples,
    ImagePool,
    adapter_names,
    get_adapter,
    load_examples,
    register_adapter,
)
# register the bundled adapters: phantom, folders/CSVs, and each public dataset in its published layout
from . import brain_mri, chest_dr, ct_diagnosis, folder, labelled, mrnet, phantom, segmentation  # noqa: F401

__all__ = [
    "DatasetNotFoundError",
    "Examples",
    "ImagePool",
    "adapter_names",
    "get_adapter",
    "load_examples",
    "register_adapter",
]
