"""Scene builders, one module per body region; importing this package registers every
(modality, anatomy) builder with `radisim.curriculum.phantom.scene`."""
from . import abdomen, chest, head, knee  # noqa: F401  (registration on import)
