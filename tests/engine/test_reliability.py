"""Seeing and trusting a run: resume after a hard kill, atomic saves,
non-finite losses, bad image files, geometry checks, visualisation."""
from __future__ import annotations

import copy
import glob
import os
import os.path as osp
import signal
import subprocess
import sys
import textwrap
import uuid

import cv2
import numpy as np
import pytest
import torch
from helpers import make_batch, tiny_vit_cim_cfg
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS, HOOKS, MODELS

import cim_mm  # noqa: F401
from cim_mm.utils import atomic_torch_save, check_config, safe_load

TESTS_DIR = osp.dirname(osp.abspath(__file__))
HELPERS_DIR = osp.dirname(TESTS_DIR)  # tests/: helpers.py
ROOT = osp.dirname(HELPERS_DIR)


@pytest.fixture(autouse=True)
def _mmpretrain_scope():
    """Registry builds resolve in mmpretrain's scope whatever ran before (a Runner
    leaves its ``default_scope`` current); the scope found is restored after."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


# ---------------------------------------------------------------- helpers
@HOOKS.register_module(force=True)
class LossRecorderHook(Hook):
    """Keeps ``{iteration (1-based): {loss name: value}}`` of a run."""

    def __init__(self) -> None:
        self.losses: dict[int, dict[str, float]] = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses[runner.iter + 1] = {
            k: float(v.detach()) if torch.is_tensor(v) else float(v)
            for k, v in outputs.items() if 'loss' in k}


@HOOKS.register_module(force=True)
class SigkillAtIterHook(Hook):
    """Kills its own process (SIGKILL: no cleanup, no atexit) before iteration
    ``at + 1``, i.e. after the checkpoint of iteration ``at`` was written."""

    priority = 'VERY_HIGH'

    def __init__(self, at: int) -> None:
        self.at = at

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module(force=True)
class StopAfterIterHook(Hook):
    """Stops the loop (cleanly) after iteration ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            runner.train_loop.stop_training = True


@HOOKS.register_module(force=True)
class PoisonLossAtIterHook(Hook):
    """Makes the head's loss NaN from iteration ``at`` (1-based) on."""

    def __init__(self, at: int) -> None:
        self.at = at

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.at:
            runner.model.head.decoder.bias.data.fill_(float('nan'))


def write_folder_dataset(root: str, n: int = 8, size: int = 16) -> str:
    """``root/train/<class>/*.png``: deterministic RGB images."""
    rng = np.random.RandomState(0)
    for i in range(n):
        d = osp.join(root, 'train', f'class_{i % 2}')
        os.makedirs(d, exist_ok=True)
        img = rng.randint(0, 256, (size, size, 3), dtype=np.uint8)
        cv2.imwrite(osp.join(d, f'img_{i}.png'), img)
    return root


def train_cfg(work_dir: str, data_root: str, *, max_iters: int = 6,
              ckpt_every: int = 3, hooks: tuple = (), resume: bool = False,
              amp: bool = False, name: str = 'run') -> dict:
    """A tiny CIM run through mmengine's Runner: 16 px images, 4x4 grid, toy
    tokenizer, random flips + BEiT masks (the data RNG) and Gumbel sampling
    (the model RNG), AdamW + warm-up + cosine, num_workers=0."""
    pipeline = [
        dict(type='SafeLoadImageFromFile'),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='BEiTMaskGenerator', input_size=(4, 4), num_masking_patches=6,
             min_num_patches=2),
        dict(type='PackInputs'),
    ]
    optim = dict(type='OptimWrapper',
                 optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                 clip_grad=dict(max_norm=3.0))
    if amp:
        optim.update(type='AmpOptimWrapper', dtype='bfloat16', loss_scale='dynamic')
    return dict(
        default_scope='mmpretrain',
        experiment_name=f'{name}-{uuid.uuid4().hex[:8]}',  # unique loggers/message hubs
        work_dir=work_dir,
        model=tiny_vit_cim_cfg('respix'),
        train_dataloader=dict(
            batch_size=2, num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train',
                         pipeline=pipeline)),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
        optim_wrapper=optim,
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
            dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=2,
                 end=max_iters),
        ],
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=ckpt_every),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='RNGStateHook'), dict(type='NonFiniteLossHook'),
                      dict(type='LossRecorderHook'), *hooks],
        visualizer=dict(type='UniversalVisualizer', name=f'vis-{uuid.uuid4().hex[:8]}',
                        vis_backends=[dict(type='LocalVisBackend')]),
        log_processor=dict(by_epoch=False),
        randomness=dict(seed=0),
        resume=resume,
        log_level='WARNING',
    )


def run(cfg: dict) -> Runner:
    runner = Runner.from_cfg(Config(copy.deepcopy(cfg)))
    runner.train()
    return runner


def recorded_losses(runner: Runner) -> dict[int, dict[str, float]]:
    return next(h for h in runner.hooks if isinstance(h, LossRecorderHook)).losses


# ------------------------------------------------------------------ resume
N = 3  # checkpoint every N iterations, killed after N, resumed to 2N


@pytest.mark.parametrize('amp', [
    False,
    pytest.param(True, marks=pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason='the AMP scaler part needs CUDA: mmengine 0.10.7 AmpOptimWrapper asserts '
        'a CUDA/NPU/MLU device in __init__, so it cannot be built on CPU')),
])
def test_hard_kill_then_resume_matches_uninterrupted_run(tmp_path, amp):
    data = write_folder_dataset(str(tmp_path / 'data'))
    killed_dir = str(tmp_path / 'killed')

    # 1. a training process SIGKILLed right after the checkpoint of iteration N
    script = textwrap.dedent(f'''
        import sys
        sys.path[:0] = [{TESTS_DIR!r}, {HELPERS_DIR!r}]
        import test_reliability as T
        import torch
        torch.set_num_threads({torch.get_num_threads()})  # the in-process runs' count
        cfg = T.train_cfg({killed_dir!r}, {data!r}, max_iters={2 * N}, ckpt_every={N},
                          hooks=(dict(type='SigkillAtIterHook', at={N}),), amp={amp},
                          name='killed')
        T.run(cfg)
    ''')
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, '-c', script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    ckpt = osp.join(killed_dir, f'iter_{N}.pth')
    assert osp.isfile(ckpt)
    assert not glob.glob(osp.join(killed_dir, '*.tmp')) and not glob.glob(
        osp.join(killed_dir, '.*.tmp'))

    # what the hook stored loads with weights_only=True + the allow-list
    state = safe_load(ckpt)
    assert set(state['rng_state']) >= {'torch', 'numpy', 'python'}
    assert state['rng_state']['torch'].dtype == torch.uint8
    if amp:
        assert state['optimizer']['loss_scaler']

    # 2. the uninterrupted run (with the visualisation hook, which must not
    #    perturb training)
    full = run(train_cfg(str(tmp_path / 'full'), data, max_iters=2 * N, ckpt_every=N,
                         amp=amp, name='full',
                         hooks=(dict(type='CIMVisualizationHook', interval=N,
                                     num_images=2),)))
    # 3. --resume of the killed run (latest checkpoint of its work_dir)
    resumed = run(train_cfg(killed_dir, data, max_iters=2 * N, ckpt_every=N,
                            resume=True, amp=amp, name='resumed'))

    assert resumed.iter == full.iter == 2 * N
    want, got = recorded_losses(full), recorded_losses(resumed)
    assert sorted(got) == list(range(N + 1, 2 * N + 1))  # restarted at N + 1
    tol = dict(rtol=1e-2, atol=1e-3) if amp else dict(rtol=1e-5, atol=1e-6)
    for it in got:
        for k in ('loss_gen', 'loss_enh'):
            np.testing.assert_allclose(got[it][k], want[it][k], **tol,
                                       err_msg=f'{k} at iteration {it}')
    # same weights (generator included), optimizer step count and lr at the end
    sd_full, sd_res = full.model.state_dict(), resumed.model.state_dict()
    for k in sd_full:
        torch.testing.assert_close(sd_res[k], sd_full[k], **tol, msg=k)
    assert any(k.startswith('generator.') for k in sd_full)
    opt_full = full.optim_wrapper.optimizer.state_dict()['state']
    opt_res = resumed.optim_wrapper.optimizer.state_dict()['state']
    assert [float(s['step']) for s in opt_res.values()] == \
        [float(s['step']) for s in opt_full.values()]
    assert resumed.optim_wrapper.get_lr() == full.optim_wrapper.get_lr()
    if amp:
        assert resumed.optim_wrapper.loss_scaler.state_dict() == \
            full.optim_wrapper.loss_scaler.state_dict()

    # control: resuming the same checkpoint without the RNG hook draws other
    # masks / flips / samples, so the next loss differs (the hook is what matters)
    control = train_cfg(killed_dir, data, max_iters=2 * N, ckpt_every=100, resume=True,
                        amp=amp, name='control',
                        hooks=(dict(type='StopAfterIterHook', at=N + 1),))
    control['load_from'] = ckpt
    control['custom_hooks'] = [h for h in control['custom_hooks']
                               if h['type'] != 'RNGStateHook']
    a, b = recorded_losses(run(control))[N + 1], want[N + 1]
    assert (a['loss_gen'], a['loss_enh']) != pytest.approx((b['loss_gen'], b['loss_enh']))

    # the visualisation hook left pictures at N and 2N (PNG files + visualizer)
    pngs = sorted(glob.glob(str(tmp_path / 'full' / 'vis' / 'cim_iter_*.png')))
    assert [osp.basename(p) for p in pngs] == [f'cim_iter_{N:06d}.png',
                                               f'cim_iter_{2 * N:06d}.png']
    img = cv2.imread(pngs[-1])
    assert img is not None and img.ndim == 3 and img.shape[0] > 0
    assert glob.glob(str(tmp_path / 'full' / '*' / 'vis_data' / 'vis_image' / '*.png'))


# ------------------------------------------------------------ atomic saves
def test_crash_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch):
    from mmengine.runner import checkpoint as mm_ckpt
    path = str(tmp_path / 'latest.pth')
    atomic_torch_save({'state_dict': {'w': torch.ones(3)}}, path)

    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b'PK\x03\x04 partial bytes of a zip checkpoint')
        f.flush()
        raise KeyboardInterrupt('killed mid-write')

    monkeypatch.setattr(torch, 'save', crashing_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({'state_dict': {'w': torch.zeros(3)}}, path)
    with pytest.raises(KeyboardInterrupt):  # the path mmengine's CheckpointHook takes
        mm_ckpt.save_checkpoint({'state_dict': {'w': torch.zeros(3)}}, path)
    monkeypatch.setattr(torch, 'save', real_save)

    assert torch.equal(safe_load(path)['state_dict']['w'], torch.ones(3))
    assert os.listdir(tmp_path) == ['latest.pth']  # no temporary files left


# ------------------------------------------------------- non-finite losses
def test_non_finite_loss_stops_with_iteration_and_loss_name(tmp_path):
    data = write_folder_dataset(str(tmp_path / 'data'))
    cfg = train_cfg(str(tmp_path / 'w'), data, max_iters=4, ckpt_every=100,
                    hooks=(dict(type='PoisonLossAtIterHook', at=2),), name='nan')
    with pytest.raises(FloatingPointError) as err:
        run(cfg)
    msg = str(err.value)
    assert msg.startswith('non-finite loss_enh=nan at iteration 2')
    assert 'loss_gen=' in msg and 'learning rate' in msg and '\n' not in msg


def test_non_finite_loss_hook_unit():
    from types import SimpleNamespace

    from cim_mm.engine.hooks import NonFiniteLossHook
    hook = NonFiniteLossHook()
    runner = SimpleNamespace(iter=11)
    hook.after_train_iter(runner, 11, outputs=dict(loss=torch.tensor(1.),
                                                   loss_gen=torch.tensor(1.)))
    with pytest.raises(FloatingPointError, match=r'^non-finite loss_gen=inf at iteration 12'):
        hook.after_train_iter(runner, 11, outputs=dict(
            loss=torch.tensor(float('inf')), loss_gen=torch.tensor(float('inf')),
            loss_enh=torch.tensor(0.5), replaced_ratio=torch.tensor(0.4)))


# ----------------------------------------------------------- bad image files
def _dataset(root, **load_kwargs):
    pipeline = [dict(type='SafeLoadImageFromFile', **load_kwargs),
                dict(type='GrayToRGB'),
                dict(type='RandomResizedCrop', scale=16, backend='pillow'),
                dict(type='PackInputs')]
    return DATASETS.build(dict(type='CustomDataset', data_root=root, data_prefix='train',
                               pipeline=pipeline))


def _write_odd_files(root):
    d = osp.join(root, 'train', 'a')
    os.makedirs(d, exist_ok=True)
    cv2.imwrite(osp.join(d, 'gray.png'), np.full((20, 20), 128, np.uint8))
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 200, 255
    cv2.imwrite(osp.join(d, 'rgba.png'), rgba)
    cv2.imwrite(osp.join(d, 'deep16.png'), np.full((20, 20, 3), 65535, np.uint16))
    cv2.imwrite(osp.join(d, 'tiny.png'), np.full((3, 3, 3), 50, np.uint8))
    with open(osp.join(d, 'broken.png'), 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n this is not an image')
    return d


@pytest.mark.parametrize('color_type', ['color', 'unchanged'])
def test_gray_rgba_16bit_and_tiny_images_load(tmp_path, color_type):
    d = _write_odd_files(str(tmp_path))
    os.remove(osp.join(d, 'broken.png'))
    ds = _dataset(str(tmp_path), color_type=color_type)
    assert len(ds) == 4
    for i in range(len(ds)):
        img = ds[i]['inputs']
        name = osp.basename(ds.get_data_info(i)['img_path'])
        assert tuple(img.shape) == (3, 16, 16), name  # tiny 3x3 is upsampled
        assert img.dtype == torch.uint8
        if name == 'deep16.png':
            assert int(img.min()) == 255  # 16-bit white stays white
        if name == 'gray.png':
            assert int(img.float().std()) == 0 and int(img[0, 0, 0]) == 128
        if name == 'rgba.png':
            assert int(img[2, 0, 0]) == 200  # alpha dropped, channels kept


def test_unreadable_and_tiny_files_are_named(tmp_path):
    _write_odd_files(str(tmp_path))
    # 'raise': one line naming the file
    ds = _dataset(str(tmp_path), on_error='raise')
    idx = next(i for i in range(len(ds))
               if ds.get_data_info(i)['img_path'].endswith('broken.png'))
    with pytest.raises(ValueError) as err:
        ds[idx]
    assert 'broken.png' in str(err.value) and '\n' not in str(err.value)
    assert "on_error='skip'" in str(err.value)
    ds = _dataset(str(tmp_path), on_error='raise', min_size=8)
    idx = next(i for i in range(len(ds))
               if ds.get_data_info(i)['img_path'].endswith('tiny.png'))
    with pytest.raises(ValueError, match=r'tiny\.png') as err:
        ds[idx]
    assert '3x3 px, smaller than min_size=8x8' in str(err.value)

    # 'skip': a warning naming the file, and BaseDataset fetches another image
    ds = _dataset(str(tmp_path), on_error='skip', min_size=8)
    names = [osp.basename(ds.get_data_info(i)['img_path']) for i in range(len(ds))]
    import logging

    from mmengine.logging import MMLogger

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.lines = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    keep = Keep()
    logger = MMLogger.get_current_instance()  # print_log(logger='current') uses it
    logger.addHandler(keep)
    try:
        outs = [ds[names.index('broken.png')], ds[names.index('tiny.png')]]
    finally:
        logger.removeHandler(keep)
    log = '\n'.join(keep.lines)
    assert all(tuple(o['inputs'].shape) == (3, 16, 16) for o in outs)
    assert 'skipping' in log and 'broken.png: unreadable image' in log
    assert 'tiny.png: image is 3x3 px, smaller than min_size=8x8' in log


def test_train_cli_reports_an_unreadable_file_in_one_line(tmp_path):
    from cim_mm.utils.cli import user_errors_as_one_line
    _write_odd_files(str(tmp_path))
    ds = _dataset(str(tmp_path), on_error='raise')
    loader = torch.utils.data.DataLoader(ds, batch_size=len(ds), num_workers=1,
                                         collate_fn=lambda x: x)
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf), pytest.raises(SystemExit):
        with user_errors_as_one_line('train.py'):
            next(iter(loader))  # raised in a worker, re-raised with its traceback
    out = buf.getvalue().strip()
    assert out.count('\n') == 0 and 'broken.png' in out and 'Traceback' not in out


# --------------------------------------------------------- geometry checks
def _build(**changes):
    cfg = tiny_vit_cim_cfg('respix')
    for path, value in changes.items():
        node = cfg
        keys = path.split('__')
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return MODELS.build(cfg)


@pytest.mark.parametrize('changes, match', [
    (dict(data_preprocessor__tokenizer_img_size=9), 'not divisible by the tokenizer'),
    (dict(backbone__img_size=18), 'patch_size 4 does not divide backbone img_size'),
    (dict(backbone__patch_size=2, head__patch_size=2),
     r'enhancer patch grid 8x8 .* != token grid 4x4'),
    (dict(head__patch_size=2), r'head.patch_size 2 x token grid 4x4 != image size 16x16'),
    (dict(generator__backbone__img_size=16), r'generator.backbone.img_size 16x16 != '),
    (dict(generator__backbone__patch_size=4), 'generator.backbone.patch_size 4 != '
     'tokenizer downsample 2'),
    (dict(head__in_channels=16), 'head.in_channels 16 != backbone embed_dims 32'),
])
def test_wrong_geometry_fails_at_build_time_in_one_line(changes, match):
    with pytest.raises(ValueError, match=match) as err:
        _build(**changes)
    assert '\n' not in str(err.value)


def test_right_geometry_builds():
    assert _build() is not None


def _cim_config(**mask):
    m = dict(type='BEiTMaskGenerator', input_size=(4, 4), num_masking_patches=6)
    m.update(mask)
    return Config(dict(model=tiny_vit_cim_cfg('respix'), train_dataloader=dict(
        dataset=dict(type='CustomDataset', pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='RandomResizedCrop', scale=16), m, dict(type='PackInputs')]))))


@pytest.mark.parametrize('mask, match', [
    (dict(num_masking_patches=20), r'num_masking_patches=20 is larger than its 4x4 grid'),
    (dict(input_size=(5, 5), num_masking_patches=6),
     r'input_size 5x5 != token grid 4x4 .*set input_size=\(4, 4\)'),
])
def test_check_config_mask_errors(mask, match):
    with pytest.raises(ValueError, match=match) as err:
        check_config(_cim_config(**mask))
    assert '\n' not in str(err.value)


def test_check_config_image_size_and_demo_configs():
    check_config(_cim_config())
    cfg = _cim_config()
    cfg.train_dataloader.dataset.pipeline[1]['scale'] = 20
    with pytest.raises(ValueError, match='makes 20x20 images but model.backbone.img_size'):
        check_config(cfg)
    for name in ('cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py',
                 'cim-revdet_resnet18-w32_1xb64-500it_fashion-mnist-32px.py'):
        demo = Config.fromfile(osp.join(ROOT, 'configs', 'cim', name))
        check_config(demo)
        hooks = [h['type'] for h in demo.custom_hooks]
        assert {'NonFiniteLossHook', 'RNGStateHook', 'CIMVisualizationHook'} <= set(hooks)


# ----------------------------------------------------------- visualisation
@pytest.mark.parametrize('head', ['respix', 'revdet'])
def test_draw_cim_step(head):
    from cim_mm.visualization import cim_step_outputs, draw_cim_step
    model = MODELS.build(tiny_vit_cim_cfg(head))
    model.train()
    batch = make_batch(batch_size=4)
    torch.manual_seed(0)
    img = draw_cim_step(model, batch, num_images=3)
    assert model.training  # mode restored
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] == 3
    ncols = 7 if head == 'respix' else 5
    panel = 16 * 6  # 16 px upscaled to >= 96
    assert img.shape[1] == ncols * (panel + 2) + 2
    assert img.shape[0] == 16 + 3 * (panel + 2) + 2 + 2 * 16  # + the two legend lines
    legend = img[-32:]
    assert (legend > 128).any()  # the legend is written (white text on grey)
    titled = draw_cim_step(model, batch, num_images=3, title='iter_5.pth, iteration 5')
    assert titled.shape[0] == img.shape[0] + 16 and (titled[:16] > 128).any()
    assert not (img[:16, :, 0] > 128).all()

    out = cim_step_outputs(model, make_batch(batch_size=2))
    # the original is de-normalised back to the uint8 input
    orig = make_batch(batch_size=2)['inputs'].float()
    torch.testing.assert_close(out['original'], orig, atol=1e-3, rtol=0)
    assert out['replaced'].shape == out['mask'].shape == (2, 4, 4)
    assert not (out['replaced'] & ~out['mask']).any()  # only masked tokens change
    if head == 'respix':
        # de-normalising the *target* with the original's window stats gives it back
        from cim_mm.models.heads import sliding_window_stats
        dp = model.data_preprocessor
        x = (orig - dp.mean) / dp.std
        m, s = sliding_window_stats(x, model.head.window_size, model.head.eps)
        back = (out['respix_target'] * s + m) * dp.std + dp.mean
        torch.testing.assert_close(back, orig, atol=1e-2, rtol=0)
    else:
        p = out['revdet_prob']
        assert p.shape == (2, 4, 4) and ((p >= 0) & (p <= 1)).all()


def test_masked_patches_are_red_over_black():
    """The mask column blends masked patches with pure red: visible on a black image."""
    from cim_mm.visualization import MASK_ALPHA, cim_step_outputs, draw_cim_step
    model = MODELS.build(tiny_vit_cim_cfg('revdet'))
    batch = make_batch(batch_size=1, mask_ratio=0.5, seed=3)
    batch['inputs'].zero_()  # a black image
    out = cim_step_outputs(model, batch)
    img = draw_cim_step(model, batch, num_images=1, titles=False, legend=False,
                        channel_order='rgb', min_panel=16, pad=0)
    panel = img[:, 16:32]  # [16, 16, 3]: the mask column
    m = out['mask'][0].repeat_interleave(4, 0).repeat_interleave(4, 1).numpy()  # [16, 16]
    assert m.any() and (~m).any()
    red = round(255 * MASK_ALPHA)
    assert (panel[m][:, 0] == red).all() and (panel[m][:, 1:] == 0).all()
    assert (panel[~m] == 0).all()


@pytest.mark.parametrize('to_rgb', [True, False])
def test_auto_channel_order_follows_the_preprocessor(to_rgb):
    """'auto' draws as 'rgb' when the preprocessor flips BGR to RGB, else as 'bgr'."""
    from cim_mm.visualization import draw_cim_step
    cfg = tiny_vit_cim_cfg('revdet')
    cfg['data_preprocessor']['to_rgb'] = to_rgb
    model = MODELS.build(cfg)
    assert model.data_preprocessor.converts_to_rgb is to_rgb
    batch = make_batch(batch_size=1, seed=4)
    kw = dict(num_images=1, titles=False, legend=False, min_panel=16, pad=0)
    torch.manual_seed(0)
    auto = draw_cim_step(model, batch, **kw)
    torch.manual_seed(0)
    explicit = draw_cim_step(model, batch, channel_order='rgb' if to_rgb else 'bgr', **kw)
    torch.manual_seed(0)
    other = draw_cim_step(model, batch, channel_order='bgr' if to_rgb else 'rgb', **kw)
    assert np.array_equal(auto, explicit) and not np.array_equal(auto, other)


def test_vis_cim_tool(tmp_path):
    data = write_folder_dataset(str(tmp_path / 'data'))
    cfg = train_cfg(str(tmp_path / 'w'), data)
    cfg['custom_imports'] = dict(imports=['cim_mm'])
    cfg_path = str(tmp_path / 'cfg.py')
    Config(cfg).dump(cfg_path)
    model = MODELS.build(tiny_vit_cim_cfg('respix'))
    ckpt = str(tmp_path / 'cim.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    sys.path.insert(0, osp.join(ROOT, 'tools', 'visualization'))
    try:
        import vis_cim
    finally:
        sys.path.pop(0)
    out = str(tmp_path / 'vis.png')
    vis_cim.main([cfg_path, ckpt, '--out', out, '--num', '3'])
    img = cv2.imread(out)
    # titled with the checkpoint (+ iteration when its meta says), legend below
    assert img is not None and img.shape[0] == 16 + 16 + 3 * 98 + 2 + 2 * 16

    # a checkpoint of another model is a one-line error, not a silent random init
    torch.save({'state_dict': {'foo': torch.zeros(1)}}, ckpt)
    with pytest.raises(SystemExit):
        vis_cim.main([cfg_path, ckpt, '--out', out])
