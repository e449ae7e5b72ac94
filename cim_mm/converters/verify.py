"""Load a written file back through the target's own loading path and compare.

This is what a training run will do (its ``init_weights()`` with the
``Pretrained`` ``init_cfg``, or timm's ``load_state_dict``); a key the path
ignores (a wrong ``prefix``, a backbone that loads non-strictly) shows up here
as a tensor that did not arrive, not as a silently random layer.
"""
from __future__ import annotations

import logging

import torch
from mmengine.logging import MMLogger

from .report import ConversionReport, short
from .targets import Target

__all__ = ['verify_written']


def verify_written(path: str, written: dict, target: Target, report: ConversionReport) -> None:
    """Load ``path`` through the target's own loading path and compare."""
    # mmengine's init dump and its "missing keys: ln2..." warning (the keys the
    # report lists as new by design) would only confuse the report
    loggers = {id(lg): lg for lg in (MMLogger.get_current_instance(),
                                     MMLogger.get_instance('mmengine'))}
    levels = {k: lg.level for k, lg in loggers.items()}
    for lg in loggers.values():
        lg.setLevel(logging.ERROR)
    try:
        module = target.build(path)
    except Exception as err:  # noqa: BLE001  (reported, not raised)
        report.verify_failures.append(f'building/loading the target failed: {err!r}')
        return
    finally:
        for k, lg in loggers.items():
            lg.setLevel(levels[k])
    got = module.state_dict()
    bad = []
    for k, v in written.items():
        k0 = k[len(target.prefix):] if target.prefix and k.startswith(target.prefix) else k
        if k0 not in got:
            bad.append(f'{k} (no such key after loading)')
        elif got[k0].shape != v.shape or not torch.equal(got[k0].to(v.dtype), v):
            bad.append(f'{k} (not loaded: differs from the file)')
    if bad:
        report.verify_failures.append(
            f'{len(bad)}/{len(written)} tensors did not load: {short(bad, 6)}')
    else:
        how = ('init_weights() with ' + repr(dict(target.init_cfg, checkpoint='<out>'))
               if target.init_cfg else 'load_state_dict(strict=False)')
        report.verified = (f'{len(written)}/{len(written)} tensors equal after loading '
                           f'the file through {type(module).__name__}.{how}')
