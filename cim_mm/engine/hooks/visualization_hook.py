"""Draw corruption/recovery pictures during CIM pre-training."""
from __future__ import annotations

import os
import os.path as osp
from typing import Optional

import cv2
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from cim_mm.utils.errors import UserError

from cim_mm.visualization import draw_cim_step, slice_data_batch


@HOOKS.register_module()
class CIMVisualizationHook(Hook):
    """Every ``interval`` training iterations (and after the last one), draw
    original / mask / corrupted / replaced / enhancer output for a fixed small
    batch (see :func:`cim_mm.visualization.draw_cim_step`). ResPix's last column,
    ``pred+orig stats``, adds the *original's* window mean/std back to the
    prediction (as MAE's pictures do): judge the model on ``pred (norm)`` vs
    ``target (norm)``, not on how much that column resembles the original.

    The batch is the first ``num_images`` samples of the first training batch
    this hook sees (after ``--resume``: the first batch after resuming), kept
    fixed so the pictures of successive iterations are comparable. The picture
    is drawn in eval mode, without gradients, with a fixed sampling seed inside
    a forked RNG: training is not perturbed (no RNG draw, no state change).

    It goes to ``runner.visualizer.add_image(name, image, step)`` (mmpretrain's
    default ``LocalVisBackend`` writes ``work_dir/<timestamp>/vis_data/vis_image``;
    add ``TensorboardVisBackend`` to ``visualizer.vis_backends`` for TensorBoard)
    and, with ``out_dir`` set, also to ``work_dir/<out_dir>/cim_iter_XXXXXX.png``.

    Args:
        interval: draw every this many iterations; ``<= 0``: only after the last.
        num_images: rows of the picture.
        out_dir: folder (relative to ``work_dir`` unless absolute) for the PNGs;
            ``None``: only the visualizer.
        name: the image name given to the visualizer.
        seed: seed of the token sampling for the picture.
    """

    priority = 'NORMAL'

    def __init__(self,
                 interval: int = 500,
                 num_images: int = 8,
                 out_dir: Optional[str] = 'vis',
                 name: str = 'cim_corruption',
                 seed: int = 0) -> None:
        if num_images < 1:
            raise UserError(f'CIMVisualizationHook num_images must be >= 1, got {num_images}')
        self.interval = int(interval)
        self.num_images = int(num_images)
        self.out_dir = out_dir
        self.name = name
        self.seed = int(seed)
        self._batch: Optional[dict] = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if self._batch is None and data_batch is not None:
            self._batch = slice_data_batch(data_batch, self.num_images)
        due = self.interval > 0 and self.every_n_train_iters(runner, self.interval)
        if (due or self.is_last_train_iter(runner)) and self._batch is not None:
            self.draw(runner, step=runner.iter + 1)

    def draw(self, runner, step: int):
        """Draw the fixed batch now; returns the image (rank 0) or ``None``."""
        if runner.rank != 0 or self._batch is None:
            return None
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        devices = []
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            devices = [torch.cuda.current_device()]
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            image = draw_cim_step(model, self._batch, num_images=self.num_images,
                                  title=f'{runner.experiment_name}, iteration {step}')
        runner.visualizer.add_image(self.name, image, step=step)
        if self.out_dir is not None:
            folder = self.out_dir if osp.isabs(self.out_dir) else osp.join(
                runner.work_dir, self.out_dir)
            os.makedirs(folder, exist_ok=True)
            path = osp.join(folder, f'cim_iter_{step:06d}.png')
            save_png(image, path)
            runner.logger.info(f'CIM visualisation saved to {path}')
        return image


def save_png(image_rgb, path: str) -> None:
    """Write an ``[H, W, 3]`` uint8 RGB image."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if not cv2.imwrite(path, image_rgb[..., ::-1].copy()):
        raise OSError(f'could not write {path}')
