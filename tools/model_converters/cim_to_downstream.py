"""Convert a CIM pre-training checkpoint into a downstream backbone checkpoint.

Only the enhancer is kept (generator, tokenizer, head and neck are dropped on
purpose and counted). The result is checked key by key and shape by shape
against a freshly built target backbone; the architecture facts no shape shows
(head count, activation, a ResNet's stride placement) are compared with the
enhancer config the checkpoint's ``meta`` holds. The file is then loaded back
through the target's own loading path and compared tensor by tensor. Any
missing / unexpected / shape-mismatched key or differing architecture fact makes
the command exit 1 and write nothing, unless ``--allow-mismatch``.

    # mmpretrain fine-tuning / linear probing: check against the config you train
    python tools/model_converters/cim_to_downstream.py CIM.pth OUT.pth \\
        --target-config configs/cim/benchmarks/vit-base-p16_cim-pre_8xb128-coslr-100e_in1k.py
    # mmseg UperNet (ADE20K 512 px)
    B=configs/cim/benchmarks
    python tools/model_converters/cim_to_downstream.py CIM.pth OUT.pth \\
        --target-config $B/upernet_vit-base-p16_cim-pre_8xb2-160k_ade20k-512x512.py
    # without a config: the enhancer's own architecture (or a preset)
    python tools/model_converters/cim_to_downstream.py CIM.pth OUT.pth --target mmseg \\
        --arch vit-base-p16 --img-size 512
    python tools/model_converters/cim_to_downstream.py CIM.pth OUT.pth --target timm

Targets: ``mmpretrain`` (``backbone.``-prefixed keys: ``init_cfg=dict(
type='Pretrained', checkpoint=OUT, prefix='backbone.')`` or ``load_from``),
``mmseg`` (backbone-relative keys for mmseg's MAE / BEiT / VisionTransformer /
ResNet / ResNetV1c / SwinTransformer: ``init_cfg=dict(type='Pretrained', checkpoint=OUT)``;
an ``mmpretrain.*`` backbone such as ``mmpretrain.ConvNeXt`` keeps the ``backbone.``
prefix), ``timm`` (a plain state dict in timm's vit_* / beit_* / resnet* naming).
A ConvNeXt / Swin (any feature-map) enhancer needs ``--target-config``: the shipped
ones are ``configs/cim/benchmarks/*convnext*`` and ``*swin*``.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # mmengine's import

from cim_mm.utils.cli import user_errors_as_one_line  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    from cim_mm.converters import ARCH_PRESETS
    p = argparse.ArgumentParser(
        description='CIM pre-training checkpoint -> mmpretrain / mmseg / timm backbone',
        epilog='example: python tools/model_converters/cim_to_downstream.py '
               'work_dirs/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px/iter_500.pth '
               'work_dirs/cim_vit-tiny.pth --target-config configs/cim/benchmarks/'
               'vit-tiny-p4_cim-pre_1xb64-ft-1000it_fashion-mnist-32px.py')
    p.add_argument('src', help='CIM checkpoint (mmengine, with state_dict)')
    p.add_argument('dst', help='output file (written atomically)')
    p.add_argument('--target', choices=['mmpretrain', 'mmseg', 'timm'], default=None,
                   help='target toolbox (default: from --target-config, else mmpretrain)')
    p.add_argument('--target-config', default=None,
                   help='the mmpretrain/mmseg config you will train with: its '
                   'model.backbone is the target (recommended)')
    p.add_argument('--arch', default='auto', choices=['auto', *ARCH_PRESETS],
                   help='without --target-config (ViT / ResNet enhancers): auto = the '
                   'enhancer architecture read from the checkpoint; a preset also checks '
                   'the dims')
    p.add_argument('--img-size', type=int, default=None,
                   help='without --target-config: the target input size (e.g. 512 for '
                   'ADE20K); position embeddings / relative position tables are '
                   'resized to it')
    p.add_argument('--num-heads', type=int, default=None,
                   help='ViT heads when neither the weights nor the checkpoint meta say '
                   '(checked against the target like the meta\'s)')
    p.add_argument('--allow-mismatch', action='store_true',
                   help='write what matched and exit 0 even on a mismatch')
    p.add_argument('--no-verify', action='store_true',
                   help='skip loading the written file back into the target')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    with user_errors_as_one_line('cim_to_downstream.py'):
        import cim_mm  # noqa: F401  (registers the CIM modules the source config names)
        from cim_mm.converters import convert_checkpoint
        target = args.target
        if target is None and args.target_config is None:
            target = 'mmpretrain'
        report = convert_checkpoint(
            args.src, args.dst, target=target, target_config=args.target_config,
            arch=args.arch, img_size=args.img_size, num_heads=args.num_heads,
            allow_mismatch=args.allow_mismatch, verify=not args.no_verify)
        if report.ok:
            print(f'wrote {args.dst}')
        else:
            print(f'wrote {args.dst} WITH MISMATCHES (--allow-mismatch)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
