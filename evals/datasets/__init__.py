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
from . import folder, phantom  # noqa: F401  (register the bundled adapters)

__all__ = [
    "DatasetNotFoundError",
    "Examples",
    "ImagePool",
    "adapter_names",
    "get_adapter",
    "load_examples",
    "register_adapter",
]
