"""The shipped Fashion-MNIST configs, run as a user runs them: ``tools/train.py``
on a tiny fake Fashion-MNIST (idx files), a couple of iterations each.

Pre-training (ViT, ResNet, ConvNeXt and Swin enhancers, ResPix and RevDet) must leave a
checkpoint, a log and a corruption picture, and ``--resume`` must continue it;
the demo checkpoint must then convert into the Fashion-MNIST fine-tune config and
train / evaluate there. The real data and the trained tokenizer are not needed.
"""
from __future__ import annotations

import glob
import json
import os.path as osp
import sys

import pytest
import torch

import cim_mm  # noqa: F401
from cim_mm.utils import atomic_torch_save, safe_load
from mmengine.config import Config
from mmpretrain.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))
sys.path.insert(0, osp.join(ROOT, 'tools', 'model_converters'))
CIM_DIR = osp.join(ROOT, 'configs', 'cim')
DEMOS = [
    'cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py',
    'cim-revdet_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py',
    'cim-respix_resnet18-w32_1xb64-500it_fashion-mnist-32px.py',
    'cim-revdet_resnet18-w32_1xb64-500it_fashion-mnist-32px.py',
    'cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px.py',
    'cim-revdet_swin-w64_1xb64-500it_fashion-mnist-32px.py',
]


@pytest.fixture(scope='module')
def demo_tokenizer(tmp_path_factory) -> str:
    """An (untrained) VQ tokenizer of the demo's architecture, saved as
    ``tools/train_tokenizer.py`` saves it."""
    cfg = Config.fromfile(osp.join(CIM_DIR, DEMOS[0])).model.tokenizer.to_dict()
    cfg.update(checkpoint=None, allow_random_init=True)
    torch.manual_seed(0)
    tok = MODELS.build(cfg)
    path = str(tmp_path_factory.mktemp('tok') / 'tokenizer.pth')
    atomic_torch_save(tok.tokenizer_state_dict(), path)
    return path


def _opts(data: str, tok: str, iters: int) -> list[str]:
    return [
        '--cfg-options', f'train_dataloader.dataset.data_root={data}',
        f'model.tokenizer.checkpoint={tok}', f'train_cfg.max_iters={iters}',
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
        'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=2',
        'log_level=WARNING'
    ]


def _last_iter(work_dir: str) -> int:
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return int(safe_load(f.read().strip())['meta']['iter'])


@pytest.mark.parametrize('name', DEMOS, ids=lambda n: n.split('_1xb')[0])
def test_demo_config_trains_saves_draws_and_resumes(name, tmp_path, fake_fashion_mnist,
                                                    demo_tokenizer):
    import train
    cfg = osp.join(CIM_DIR, name)
    work = str(tmp_path / 'work')
    train.main([cfg, '--work-dir', work, *_opts(fake_fashion_mnist, demo_tokenizer, 2)])

    assert _last_iter(work) == 2
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    ckpt = safe_load(osp.join(work, 'iter_2.pth'))
    prefixes = {k.split('.')[0] for k in ckpt['state_dict']}
    assert {'backbone', 'generator', 'head'} <= prefixes
    assert 'tokenizer' not in prefixes  # frozen tokenizer is rebuilt, not saved
    assert osp.isfile(osp.join(work, 'vis', 'cim_iter_000002.png'))
    (scalars, ) = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    logged = [json.loads(ln) for ln in open(scalars)]
    assert [r['iter'] for r in logged if 'loss_enh' in r] == [1, 2]
    assert all(torch.isfinite(torch.tensor([r['loss_gen'], r['loss_enh']])).all()
               for r in logged if 'loss_enh' in r)

    # --resume (no value) continues from the latest checkpoint of the work dir
    train.main([cfg, '--work-dir', work, '--resume',
                *_opts(fake_fashion_mnist, demo_tokenizer, 4)])
    assert _last_iter(work) == 4
    resumed = safe_load(osp.join(work, 'iter_4.pth'))
    assert resumed['meta']['iter'] == 4


def test_demo_checkpoint_into_fashion_mnist_finetune(tmp_path, fake_fashion_mnist,
                                                     demo_tokenizer):
    """Demo pre-training -> cim_to_downstream.py -> the fine-tune config trains
    and evaluates, starting from exactly the converted enhancer weights."""
    import cim_to_downstream
    import train
    pre = str(tmp_path / 'pre')
    train.main([osp.join(CIM_DIR, DEMOS[0]), '--work-dir', pre,
                *_opts(fake_fashion_mnist, demo_tokenizer, 2)])
    ft_cfg = osp.join(CIM_DIR, 'benchmarks',
                      'vit-tiny-p4_cim-pre_1xb64-ft-1000it_fashion-mnist-32px.py')
    out = str(tmp_path / 'backbone_ft.pth')
    assert cim_to_downstream.main([osp.join(pre, 'iter_2.pth'), out,
                                   '--target-config', ft_cfg]) == 0
    converted = safe_load(out)['state_dict']
    pre_sd = safe_load(osp.join(pre, 'iter_2.pth'))['state_dict']
    for k, v in converted.items():
        if k.startswith('backbone.ln2.'):  # the fresh pooling norm, at LayerNorm's init
            assert torch.equal(v, torch.ones_like(v) if k.endswith('weight') else
                               torch.zeros_like(v)), k
            continue
        torch.testing.assert_close(v, pre_sd[k], msg=k)  # backbone.* kept as is

    # the fine-tune config's own loading path gives exactly those weights
    cfg = Config.fromfile(ft_cfg)
    cfg.model.backbone.init_cfg.checkpoint = out
    model = MODELS.build(cfg.model)
    model.init_weights()
    loaded = model.backbone.state_dict()
    for k, v in converted.items():
        torch.testing.assert_close(loaded[k[len('backbone.'):]], v, msg=k)
    # every backbone key is in the file: the new pooling norm of the fine-tune recipe
    # (avg_featmap) is written at its initial values, so nothing loads silently fresh
    assert {k for k in loaded if 'backbone.' + k not in converted} == set()

    ft = str(tmp_path / 'ft')
    train.main([ft_cfg, '--work-dir', ft, '--cfg-options',
                f'model.backbone.init_cfg.checkpoint={out}',
                f'train_dataloader.dataset.data_root={fake_fashion_mnist}',
                f'val_dataloader.dataset.data_root={fake_fashion_mnist}',
                f'test_dataloader.dataset.data_root={fake_fashion_mnist}',
                'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
                'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
                'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                'default_hooks.checkpoint.interval=2', 'log_level=WARNING'])
    (scalars, ) = glob.glob(osp.join(ft, '*', 'vis_data', 'scalars.json'))
    val = [json.loads(ln) for ln in open(scalars) if 'accuracy/top1' in ln]
    assert len(val) == 1 and 0 <= val[0]['accuracy/top1'] <= 100
