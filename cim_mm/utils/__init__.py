from .config_check import check_config, check_model_geometry
from .safe_checkpoint import CheckpointSecurityError, atomic_torch_save, safe_load

__all__ = ['check_config', 'check_model_geometry', 'CheckpointSecurityError',
           'atomic_torch_save', 'safe_load']
