from .compat import install_compat
from .config_check import check_config, check_model_geometry
from .safe_checkpoint import (CheckpointSecurityError, atomic_torch_save,
                              install_checkpoint_safety, safe_load)

__all__ = [
    'install_compat', 'check_config', 'check_model_geometry',
    'CheckpointSecurityError', 'atomic_torch_save', 'install_checkpoint_safety',
    'safe_load'
]
