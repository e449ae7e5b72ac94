"""Draw what a CIM checkpoint does to a few training images.

    python tools/visualization/vis_cim.py CONFIG CHECKPOINT --out vis.png \
        [--num 8] [--seed 0] [--device cpu] [--cfg-options k=v ...]

One row per image: original | mask | corrupted | replaced | enhancer output
(ResPix: normalised target, prediction, prediction + the original's window
statistics; RevDet: P(replaced)).
The images are the first ``--num`` samples of the config's train dataset, run
through its train pipeline (random crops/flips/masks seeded by ``--seed``).
"""
from __future__ import annotations

import argparse
import os.path as osp
import random
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # mmengine's import

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dataset import default_collate  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402

import cim_mm  # noqa: E402,F401  (registers modules, checkpoint safety)
from cim_mm.engine.hooks.visualization_hook import save_png  # noqa: E402
from cim_mm.utils.cli import user_errors_as_one_line  # noqa: E402
from cim_mm.utils.errors import UserError  # noqa: E402
from cim_mm.visualization import draw_cim_step  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Visualise CIM corruption and recovery')
    p.add_argument('config', help='the CIM pre-training config')
    p.add_argument('checkpoint', help='a CIM checkpoint (mmengine .pth)')
    p.add_argument('--out', required=True, help='output PNG path')
    p.add_argument('--num', type=int, default=8, help='number of images (rows)')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the pipeline randomness and the token sampling')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    return p.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    with user_errors_as_one_line('vis_cim.py'):
        if not osp.isfile(args.config):
            raise FileNotFoundError(f'config file {args.config} does not exist')
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(f'checkpoint {args.checkpoint} does not exist')
        if args.num < 1:
            raise UserError(f'--num must be >= 1, got {args.num}')
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        from mmpretrain.registry import DATASETS, MODELS

        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        model = MODELS.build(cfg.model)
        ckpt = load_checkpoint(model, args.checkpoint, map_location='cpu', strict=False)
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
        keys = {k[len('module.'):] if k.startswith('module.') else k for k in state}
        missing = sorted(set(model.state_dict()) - keys)
        if missing:
            raise UserError(
                f'{args.checkpoint} lacks {len(missing)} of the model\'s weights (e.g. '
                f'{missing[0]}): is it a CIM checkpoint trained with this config?')
        model.to(args.device).eval()

        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        if len(dataset) == 0:
            raise UserError(f'the train dataset of {args.config} is empty')
        samples = [dataset[i] for i in range(min(args.num, len(dataset)))]
        batch = default_collate(samples)
        torch.manual_seed(args.seed)
        meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
        step = meta.get('iter') if isinstance(meta, dict) else None
        title = osp.basename(args.checkpoint) + (f', iteration {step}' if step is not None
                                                 else '')
        image = draw_cim_step(model, batch, num_images=args.num, title=title)
        save_png(image, args.out)
    print(f'saved {args.out} ({image.shape[1]}x{image.shape[0]} px, {len(samples)} images)')
    return args.out


if __name__ == '__main__':
    main()
