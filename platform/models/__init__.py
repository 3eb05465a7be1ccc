"""open_clip model factory and the registry of bundled architectures (see configs/README.md)."""
from .factory import ClipBundle, available_models, load_clip, register_configs, save_checkpoint

__all__ = ["ClipBundle", "available_models", "load_clip", "register_configs", "save_checkpoint"]
