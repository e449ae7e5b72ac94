from .compat import install_compat
from .safe_checkpoint import (CheckpointSecurityError, atomic_torch_save,
                              install_checkpoint_safety, safe_load)

__all__ = [
    'install_compat', 'CheckpointSecurityError', 'atomic_torch_save',
    'install_checkpoint_safety', 'safe_load'
]
