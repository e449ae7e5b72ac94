"""Drop path once per branch in mmpretrain's ``BEiTViT`` (a config switch).

mmpretrain 1.2's ``BEiTTransformerEncoderLayer`` gives its FFN a
``dropout_layer=DropPath(p)`` *and* wraps the FFN branch in its own
``self.drop_path``: the FFN branch of a sample is dropped with probability
``1 - (1 - p)^2`` (0.19 at ``p = 0.1``, measured in tests/models/test_hardening.py)
and, when kept, scaled by ``1 / (1 - p)^2``. BEiT's reference code, timm and
mmseg's ``BEiT`` drop it once (``p``, scale ``1 / (1 - p)``). The attention
branch is dropped once in every one of them.

The fix touches nothing but the config: ``BEiTViT`` passes ``layer_cfgs`` to
every layer, and a layer's ``ffn_cfg`` overrides the FFN's ``dropout_layer``.
Write in the backbone config::

    layer_cfgs=dict(ffn_cfg=dict(add_identity=False, dropout_layer=None))

(``add_identity=False`` must be repeated: the given ``ffn_cfg`` replaces the
layer's default, and an FFN that adds its identity would add ``x`` twice).
The layer's own ``drop_path`` stays, so the FFN branch is dropped once with
the configured rate. No parameter changes: checkpoints load unchanged both
ways. Configs: ``configs/_base_/models/cim_vit-base-p16.py`` (the CIM ViT
enhancer) and the ``BEiTViT`` fine-tune / linear-probe configs under
``configs/cim/benchmarks/``; the generator's ``BEiTPretrainViT`` uses
``drop_path_rate=0`` (nothing to drop).
"""
from __future__ import annotations

__all__ = ['BEIT_SINGLE_DROP_PATH']

#: keyword arguments of one ``BEiTTransformerEncoderLayer`` (``BEiTViT``'s
#: ``layer_cfgs``) that leave the FFN branch's drop path to the layer alone
BEIT_SINGLE_DROP_PATH: dict = dict(ffn_cfg=dict(add_identity=False, dropout_layer=None))
