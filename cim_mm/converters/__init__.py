"""CIM pre-training checkpoint -> downstream backbone checkpoints, checked.

A CIM checkpoint holds the enhancer (``backbone.*``, an mmpretrain
``VisionTransformer``/``BEiTViT``, ``ResNet``/``ResNetV1c``/``ResNetV1d``, or any
other feature-map backbone such as ``ConvNeXt`` / ``SwinTransformer``) next to the
generator, the tokenizer, the head (and a neck for feature-map enhancers). Only
the enhancer is kept; it is renamed for the target backbone and checked, key by
key and shape by shape, against a freshly built target:

* ``mmpretrain``: the same names, ``backbone.``-prefixed (load with
  ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` or
  ``load_from``);
* ``mmseg``: backbone-relative names (mmseg's ``BEiT``/``MAE``/
  ``VisionTransformer`` load their ``Pretrained`` file themselves and ignore
  ``prefix``), for ``MAE``/``BEiT``/``VisionTransformer``/``ResNet``/``ResNetV1c``/
  ``ResNetV1d`` and ``SwinTransformer``; an ``mmpretrain.*`` backbone inside an mmseg
  config (e.g. ``mmpretrain.ConvNeXt``) gets the mmpretrain layout (the ``seg`` extra:
  mmsegmentation, mmcv with compiled ops);
* ``timm``: a plain state dict in timm's ``vit_*``/``beit_*``/``resnet*`` naming.

The conversion is made of exact renames plus a few transforms that keep the
network's function *exactly* (checked by forward equivalence in
``tests/converters/test_downstream.py``; details in :mod:`.vit`); anything else is a mismatch:

* a value the source does not have and the target needs is synthesised only
  where one value leaves the function unchanged: layer scale = 1, a missing
  (key/query/value/patch) bias = 0, relative position bias = 0 (mmseg ``MAE``
  initialises it to 0 itself), absolute position embedding = 0; a shared
  relative position bias is copied to every layer;
* a source value the target cannot hold is dropped only where that is exact:
  the key bias (it adds the same logit to every key of a query, so it cancels in
  the softmax), all-zero tensors; layer scale is folded into the preceding
  projection (``proj``/``fc2``) when the target has none;
* position embeddings / relative position bias tables are resized to the
  target's grid the way mmpretrain/mmseg would (bicubic / BEiT geometric
  interpolation), so the file matches the target exactly;
* by design, and listed in the report: the enhancer's final norm is dropped when
  the target has none (BEiT/MAE-style fine-tuning pools and uses a new pooling
  norm), and the target's pooling norm / classifier head start fresh.

Architecture facts that no tensor shape shows (a ViT's head count, its
activation, a ResNet's stride placement) are read from the checkpoint's
``meta['cfg']`` and compared with the target's. After writing, the file is
loaded back through the target's *own* loading path (its ``init_weights`` with
the ``Pretrained`` init_cfg, i.e. what a training run will do) and compared
tensor by tensor.

One concept per module: :mod:`.keys` (ViT key families), :mod:`.report`,
:mod:`.source` (what the checkpoint holds), :mod:`.presets`, :mod:`.targets`,
:mod:`.vit`, :mod:`.resnet`, :mod:`.featmap` (ConvNeXt, Swin: same names, the output
norms follow ``out_indices``), :mod:`.architecture`, :mod:`.verify`,
:mod:`.checkpoint` (the whole conversion). The command line is
``tools/model_converters/cim_to_downstream.py``.
"""
from __future__ import annotations

from .checkpoint import convert_checkpoint, convert_state_dict
from .keys import canonical_key, vit_to_canonical
from .presets import ARCH_PRESETS
from .report import ConversionError, ConversionReport
from .source import enhancer_cfg_from_meta, split_cim_state_dict
from .targets import Target, build_target, registry_target

__all__ = [
    'ConversionError', 'ConversionReport', 'ARCH_PRESETS', 'Target', 'split_cim_state_dict',
    'enhancer_cfg_from_meta', 'convert_state_dict', 'build_target', 'registry_target',
    'convert_checkpoint', 'vit_to_canonical', 'canonical_key'
]
