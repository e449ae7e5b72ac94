"""What the seg track's frozen ViT backbones hold per patch, without a trained head.

    python tools/analysis/seg_feature_probe.py --methods croco,mae,cim-revdet \
        [--pretrained-dir benchmarks/results/vit] [--seed 0] [--scenes-root DIR] \
        [--train 500] [--val 500] [--out benchmarks/results/seg/feature_probe.json]

For each pre-trained ViT backbone (``<dir>/<method>[_seed<k>]/backbone.pth``,
built as the track's evaluation backbone at the scenes' size; ``random``: the
same ViT at its initialisation) it takes the last block's final-normed patch
tokens of the scenes, the features the frozen probe of the seg track sees, and:

* a closed-form probe: every channel standardised with the training tokens'
  mean and std, then ridge regression onto one-hot token labels (a token's
  label is the majority class of its pixels), argmax; token mIoU and accuracy
  on the validation scenes. Standardising makes it blind to the features' scale,
  which a head trained by a few hundred AdamW steps is not;
* the features' scale: the mean over channels of the per-channel mean's
  magnitude (``offset``), of the per-channel std over tokens (``spread``), and
  the share of the variance in the first principal component.

A backbone whose tokens are a large constant plus a small varying part (offset
much larger than spread) can be linearly separable here while a short AdamW
probe of its raw features learns only the background.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import os.path as osp
import sys

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

NUM_CLASSES = 11  # background + the 10 Fashion-MNIST classes


def token_labels(labels: np.ndarray, patch: int, num_classes: int = NUM_CLASSES
                 ) -> np.ndarray:
    """``[N, H, W]`` pixel labels -> ``[N, H / p, W / p]``: each patch's majority
    class (the lower class on a tie)."""
    n, h, w = labels.shape
    if h % patch or w % patch:
        raise ValueError(f'label maps of {h}x{w} px do not tile into {patch} px patches')
    tiles = labels.reshape(n, h // patch, patch, w // patch, patch).transpose(0, 1, 3, 2, 4)
    tiles = tiles.reshape(n, h // patch, w // patch, patch * patch)  # [N, h, w, p * p]
    counts = np.eye(num_classes, dtype=np.int64)[tiles].sum(3)  # [N, h, w, K]
    return counts.argmax(-1)


def ridge_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray,
                num_classes: int = NUM_CLASSES, ridge: float = 1e-3) -> np.ndarray:
    """Closed-form linear probe. ``train_x [M, C]``, ``train_y [M]``, ``val_x
    [K, C]`` -> predicted classes ``[K]``.

    Channels are standardised with the training mean and std, then
    ``W = (A^T A + ridge * M * I)^-1 A^T Y`` with ``A = [x, 1]`` and one-hot ``Y``."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-8  # [C]
    a = np.c_[(train_x - mu) / sd, np.ones(len(train_x))]  # [M, C + 1]
    y = np.eye(num_classes)[train_y]  # [M, K]
    w = np.linalg.solve(a.T @ a + ridge * len(a) * np.eye(a.shape[1]), a.T @ y)  # [C + 1, K]
    return (np.c_[(val_x - mu) / sd, np.ones(len(val_x))] @ w).argmax(1)


def miou(pred: np.ndarray, gt: np.ndarray, num_classes: int = NUM_CLASSES) -> float:
    """Mean IoU (%) over the classes present in ``gt`` or ``pred``."""
    ious = []
    for c in range(num_classes):
        union = np.sum((pred == c) | (gt == c))
        if union:
            ious.append(np.sum((pred == c) & (gt == c)) / union)
    return float(100. * np.mean(ious))


def feature_stats(x: np.ndarray) -> dict[str, float]:
    """``x [M, C]`` tokens: ``offset`` (mean |per-channel mean|), ``spread``
    (mean per-channel std) and ``pc1_share`` (variance share of the first
    principal component)."""
    centred = x - x.mean(0)
    eig = np.linalg.eigvalsh(centred.T @ centred / max(len(x) - 1, 1))  # ascending
    return dict(offset=float(np.abs(x.mean(0)).mean()), spread=float(x.std(0).mean()),
                pc1_share=float(eig[-1] / eig.sum()))


def read_scenes(root: str, split: str, n: int, mean: float, std: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` scenes of ``split``: images ``[n, 3, H, W]`` (normalised
    as the seg configs do) and label maps ``[n, H, W]``."""
    from PIL import Image
    paths = sorted(glob.glob(osp.join(root, 'images', split, '*.png')))[:n]
    if not paths:
        raise FileNotFoundError(f'no scenes in {osp.join(root, "images", split)}: write them '
                                'with tools/dataset_converters/fashion_mnist_scenes.py')
    imgs = np.stack([np.asarray(Image.open(p).convert('RGB')) for p in paths])
    labels = np.stack([np.asarray(Image.open(p.replace(osp.join('images', split),
                                                       osp.join('annotations', split))))
                       for p in paths])
    x = (imgs.astype(np.float32) - mean) / std
    return x.transpose(0, 3, 1, 2), labels.astype(np.int64)


def backbone_tokens(method: str, backbone_pth: str | None, images: np.ndarray,
                    seed: int = 0) -> np.ndarray:
    """The last block's final-normed patch tokens ``[N * h * w, C]`` of the
    track's evaluation backbone for ``method``, built at the images' size (the
    position tables resized on loading), weights from ``backbone_pth`` (None:
    the initialisation of seed ``seed``)."""
    import torch
    from mmpretrain.registry import MODELS

    import mmpretrain.models  # noqa: F401  (registers the backbones)
    from benchmarks.scales import build_scale
    from benchmarks.specs import build_spec
    from cim_mm.utils import safe_load
    from cim_mm.utils.errors import UserError
    cfg = build_spec('mae' if method == 'random' else method,
                     build_scale('cpu-small')).eval_backbone
    torch.manual_seed(seed)
    model = MODELS.build(dict(cfg, img_size=images.shape[-1], out_type='featmap'))
    if backbone_pth is None:
        model.init_weights()
    else:
        state = {k: v for k, v in safe_load(backbone_pth).items()
                 if not k.startswith('mask_token')}
        missing, unexpected = model.load_state_dict(state, strict=False)
        # the relative position index is a function of the grid, rebuilt at this size
        missing = [k for k in missing if not k.endswith('relative_position_index')]
        if missing or unexpected:
            raise UserError(f'{backbone_pth} does not fit the {method} evaluation backbone: '
                             f'missing {missing[:3]}, unexpected {unexpected[:3]}')
    model.eval()
    x = torch.from_numpy(images)
    with torch.no_grad():
        feats = torch.cat([model(x[i:i + 100])[-1] for i in range(0, len(x), 100)])
    c = feats.shape[1]  # [N, C, h, w] -> [N * h * w, C]
    return feats.permute(0, 2, 3, 1).reshape(-1, c).double().numpy()


def probe(method: str, backbone_pth: str | None, train: tuple, val: tuple, patch: int,
          ridge: float) -> dict:
    """The closed-form probe and the feature scale of one backbone."""
    tr = backbone_tokens(method, backbone_pth, train[0])
    va = backbone_tokens(method, backbone_pth, val[0])
    ytr = token_labels(train[1], patch).reshape(-1)
    yva = token_labels(val[1], patch).reshape(-1)
    pred = ridge_probe(tr, ytr, va, ridge=ridge)
    return dict(method=method, backbone=backbone_pth, token_mIoU=round(miou(pred, yva), 2),
                token_acc=round(float(100. * np.mean(pred == yva)), 2),
                background_share=round(float(100. * np.mean(yva == 0)), 2),
                **{k: round(v, 4) for k, v in feature_stats(tr).items()})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--methods', required=True,
                   help='comma-separated ViT-track methods (random: no weights)')
    from benchmarks.paths import DEFAULT_WORK_DIRS, RESULTS_DIR
    p.add_argument('--pretrained-dir', default=osp.join(ROOT, DEFAULT_WORK_DIRS['vit']),
                   help='the ViT track\'s work dir, with <method>[_seed<k>]/backbone.pth '
                   f'(default: {DEFAULT_WORK_DIRS["vit"]}, the track\'s own)')
    p.add_argument('--seed', type=int, default=0, help='which seed\'s pre-training run')
    p.add_argument('--scenes-root', default='data/fashion_mnist_scenes')
    p.add_argument('--train', type=int, default=500, help='training scenes for the probe')
    p.add_argument('--val', type=int, default=500, help='validation scenes scored')
    p.add_argument('--ridge', type=float, default=1e-3)
    p.add_argument('--out', default=osp.join(ROOT, RESULTS_DIR, 'seg', 'feature_probe.json'),
                   help=f'the results (JSON; default: {RESULTS_DIR}/seg/feature_probe.json)')
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from benchmarks.runner import run_name
    from benchmarks.seg_config import load
    from benchmarks.seg_specs import seg_config
    from cim_mm.utils.cli import user_errors_as_one_line
    with user_errors_as_one_line('seg_feature_probe.py'):
        cfg = load(seg_config('vit', 'frozen', 'mae'))
        prep, patch = cfg.model.data_preprocessor, cfg.model.backbone.patch_size
        mean, std = float(prep.mean[0]), float(prep.std[0])
        train = read_scenes(args.scenes_root, 'training', args.train, mean, std)
        val = read_scenes(args.scenes_root, 'validation', args.val, mean, std)
        rows = []
        for m in [s.strip() for s in args.methods.split(',') if s.strip()]:
            pth = None
            if m != 'random':
                pth = osp.join(args.pretrained_dir, run_name(m, args.seed), 'backbone.pth')
                if not osp.isfile(pth):
                    raise FileNotFoundError(f'no {pth}: pre-train {m} with tools/benchmark.py '
                                            f'--methods {m} --work-dir {args.pretrained_dir}')
            rows.append(probe(m, pth, train, val, patch, args.ridge))
            r = rows[-1]
            print(f'{m}: token mIoU {r["token_mIoU"]:.2f}, acc {r["token_acc"]:.2f} '
                  f'(background {r["background_share"]:.1f} %); offset {r["offset"]:.3f}, '
                  f'spread {r["spread"]:.3f}, PC1 {r["pc1_share"]:.3f}')
        if args.out:
            os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
            with open(args.out, 'w') as f:
                json.dump(dict(settings=vars(args), rows=rows), f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
