"""The conversion as a whole: a CIM checkpoint file in, a checked file out.

:func:`convert_checkpoint` reads the checkpoint safely, keeps the enhancer,
builds the target, converts (:mod:`.vit` / :mod:`.resnet` / :mod:`.featmap`), checks the
architecture facts no shape shows (:mod:`.architecture`), writes the file
atomically and loads it back through the target's own loading path
(:mod:`.verify`). Any problem raises :class:`.ConversionError` after printing
the report, and nothing is written, unless ``allow_mismatch``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Optional

from ..utils.safe_checkpoint import atomic_torch_save, safe_load
from .architecture import check_architecture, source_facts
from .featmap import convert_featmap
from .keys import FAMILIES, FAMILY_NAMES
from .report import ConversionError, ConversionReport
from .resnet import convert_resnet
from .source import enhancer_cfg_from_meta, is_resnet, is_vit, split_cim_state_dict
from .targets import Target, build_target
from .verify import verify_written
from .vit import convert_vit

__all__ = ['convert_state_dict', 'convert_checkpoint']


def convert_state_dict(enhancer: dict, target: Target,
                       report: Optional[ConversionReport] = None
                       ) -> tuple[OrderedDict, ConversionReport]:
    """Enhancer state dict (mmpretrain names) -> the target's backbone-relative
    state dict (no prefix), checked against ``target.module``."""
    report = report or ConversionReport()
    template = target.module.state_dict()
    if is_vit(enhancer):
        report.source_layout = report.source_layout or 'mmpretrain ViT'
        if not target.family.startswith('resnet') and target.family in FAMILIES:
            out = convert_vit(enhancer, template, target.family, report)
        else:
            raise ConversionError(f'a ViT enhancer can not become {target.description}')
    elif is_resnet(enhancer):
        report.source_layout = report.source_layout or 'mmpretrain ResNet'
        if not target.family.startswith('resnet'):
            raise ConversionError(f'a ResNet enhancer can not become {target.description}')
        out = convert_resnet(enhancer, template, target.family, report)
    else:
        report.source_layout = report.source_layout or 'mmpretrain feature-map backbone'
        if target.family != 'featmap':
            raise ConversionError(
                f'a ConvNeXt / Swin (feature-map) enhancer can not become '
                f'{target.description}: use a target of its own class (--target-config)')
        out = convert_featmap(enhancer, template, report)
    report.target = target.description
    report.target_layout = FAMILY_NAMES.get(target.family, target.family)
    report.prefix = target.prefix
    return out, report

def convert_checkpoint(src: str, dst: str, target: Optional[str] = 'mmpretrain',
                       target_config: Optional[str] = None, arch: str = 'auto',
                       img_size: Optional[int] = None, num_heads: Optional[int] = None,
                       allow_mismatch: bool = False, verify: bool = True,
                       log: Optional[Callable[[str], None]] = print) -> ConversionReport:
    """Convert a CIM checkpoint file; write ``dst`` atomically.

    Raises:
        ConversionError: on any missing / unexpected / shape-mismatched key, an
            architecture fact that differs (head count...) or a failed load-back
            check, unless ``allow_mismatch`` (then the file is
            written with what matched and the report says what did not). On a
            mismatch without ``allow_mismatch`` nothing is written.
    """
    ckpt = safe_load(src)
    if not isinstance(ckpt, dict):
        raise ConversionError(f'{src} does not hold a dict')
    sd = ckpt.get('state_dict', ckpt)
    enhancer, dropped = split_cim_state_dict(sd)
    meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else None
    enh_cfg = enhancer_cfg_from_meta(meta)
    tgt, notes = build_target(target, enhancer, target_config, arch, img_size,
                              num_heads, enh_cfg)
    report = ConversionReport(source=src, dropped_components=dropped)
    if enh_cfg and enh_cfg.get('type'):
        report.source_layout = f"mmpretrain {enh_cfg['type']}"
    report.notes.extend(notes)
    out, report = convert_state_dict(enhancer, tgt, report)
    facts, origin, fact_notes = source_facts(enhancer, enh_cfg, num_heads)
    report.notes.extend(fact_notes)
    check_architecture(facts, origin, tgt.module, report)
    if not report.ok and not allow_mismatch:
        if log:
            log(report.format())
        arch = ''.join(f', {f} {s} in the source ({o}) but {t} in the target'
                       for f, s, t, o in report.arch_mismatch)
        if report.loaded:
            what_next = '--allow-mismatch writes what matched'
        else:  # nothing would be written worth having: the target is the wrong one
            what_next = ('not one tensor matched, so --allow-mismatch would write nothing '
                         "useful: the target is not this enhancer's architecture, pass the "
                         'target config it was made for, or --arch auto')
        raise ConversionError(
            f'{src} does not convert cleanly into {tgt.description}: '
            f'{len(report.missing)} missing, {len(report.unexpected)} unexpected, '
            f'{len(report.shape_mismatch)} shape-mismatched keys{arch} (see the report; '
            f'nothing was written; {what_next})')
    written = OrderedDict((tgt.prefix + k, v) for k, v in out.items())
    file_meta = dict(cim_mm_conversion=report.summary())
    for key in ('epoch', 'iter', 'seed', 'experiment_name', 'time', 'mmengine_version'):
        if meta and isinstance(meta.get(key), (int, float, str)):
            file_meta[f'source_{key}'] = meta[key]
    obj = written if tgt.kind == 'timm' else {'state_dict': written, 'meta': file_meta}
    atomic_torch_save(obj, dst)
    if verify:
        verify_written(dst, written, tgt, report)
        report.summary()
    if log:
        log(report.format())
    if report.verify_failures and not allow_mismatch:
        raise ConversionError(f'{dst} was written but does not load into '
                              f'{tgt.description} (see the report)')
    return report
