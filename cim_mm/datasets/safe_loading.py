"""Image loading that names the file when it cannot be used."""
from __future__ import annotations

import logging
from typing import Optional, Sequence, Union

from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log
from mmpretrain.registry import TRANSFORMS

from cim_mm.utils.errors import UserError


class ImageLoadError(UserError):
    """An image file that cannot be read or is too small to be used."""


@TRANSFORMS.register_module()
class SafeLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` that handles bad files with a message naming them.

    Grayscale, RGBA and 16-bit files load as usual (``color_type='color'``, the
    default, gives 3-channel 8-bit BGR for all of them; with
    ``color_type='unchanged'`` add ``GrayToRGB`` after this transform). Files
    that cannot be decoded (truncated, not an image, missing, empty) and images
    smaller than ``min_size`` are either

    - ``on_error='skip'``: reported once per file as a warning naming it, and the
      transform returns ``None``: mmengine's ``BaseDataset`` (training mode) then
      loads another, random index instead (up to its ``max_refetch`` times); or
    - ``on_error='raise'``: a one-line :class:`ImageLoadError` naming the file
      and telling how to skip it.

    Images smaller than the crop are not a problem for ``RandomResizedCrop`` /
    ``Resize`` (they upsample); ``min_size`` is for data where a tiny file
    means a broken one (thumbnails, placeholders).

    Args:
        on_error: ``'skip'`` or ``'raise'``.
        min_size: minimum side(s) in pixels, an int or ``(min_h, min_w)``;
            ``None`` (default): no minimum.
        **kwargs: ``LoadImageFromFile`` arguments (``color_type``, ``backend_args``...).
    """

    def __init__(self,
                 on_error: str = 'skip',
                 min_size: Optional[Union[int, Sequence[int]]] = None,
                 **kwargs) -> None:
        if on_error not in ('skip', 'raise'):
            raise ValueError(f"SafeLoadImageFromFile on_error must be 'skip' or 'raise', "
                             f'got {on_error!r}')
        kwargs.pop('ignore_empty', None)
        super().__init__(ignore_empty=False, **kwargs)
        self.on_error = on_error
        if isinstance(min_size, int):
            min_size = (min_size, min_size)
        self.min_size = None if min_size is None else tuple(int(s) for s in min_size)
        self._reported: set = set()

    def _fail(self, filename: str, why: str) -> None:
        if self.on_error == 'raise':
            raise ImageLoadError(
                f'{why}: {filename} (remove the file, or set on_error=\'skip\' in '
                'SafeLoadImageFromFile to skip such files)')
        if filename not in self._reported:
            self._reported.add(filename)
            print_log(f'skipping {filename}: {why}', logger='current',
                      level=logging.WARNING)
        return None

    def transform(self, results: dict) -> Optional[dict]:
        filename = str(results.get('img_path'))
        try:
            out = super().transform(results)
        except Exception as err:  # decode errors of cv2 / PIL, missing files, ...
            if isinstance(err, AssertionError):  # mmcv: the decoder returned None
                return self._fail(filename, 'unreadable image (could not be decoded)')
            lines = str(err).replace(filename, '').strip(' :').splitlines()
            reason = lines[-1].strip() if lines else ''
            reason = f'{type(err).__name__}: {reason[:200]}' if reason else type(err).__name__
            return self._fail(filename, f'unreadable image ({reason})')
        if out is None or out.get('img') is None:
            return self._fail(filename, 'unreadable image')
        h, w = out['img'].shape[:2]
        if self.min_size is not None and (h < self.min_size[0] or w < self.min_size[1]):
            return self._fail(filename, f'image is {h}x{w} px, smaller than min_size='
                              f'{self.min_size[0]}x{self.min_size[1]}')
        return out

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] + f", on_error='{self.on_error}', "
                f'min_size={self.min_size})')
