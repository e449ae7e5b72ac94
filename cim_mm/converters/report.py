"""What a conversion did, key by key, and the error a failed one raises.

:class:`ConversionReport` collects every decision of a conversion (loaded,
renamed, resized, synthesised or dropped exactly, new or dropped by design) and
every problem (missing, unexpected, shape-mismatched keys, architecture facts
that differ, a failed load-back check). ``ok`` is False on any problem;
``format()`` is the text the command line prints, ending in ``RESULT: OK`` or
``RESULT: MISMATCH``.
"""
from __future__ import annotations

import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

from ..utils.errors import UserError

__all__ = ['ConversionError', 'ConversionReport', 'short']


class ConversionError(UserError):
    """The checkpoint does not convert cleanly into the requested target."""


def short(items: list, n: int = 12) -> str:
    """The first ``n`` items, comma-separated, and how many more."""
    items = [str(i) for i in items]
    if len(items) <= n:
        return ', '.join(items)
    return ', '.join(items[:n]) + f', ... (+{len(items) - n} more)'


@dataclass
class ConversionReport:
    """Every decision and every problem of one conversion (see the module doc)."""
    source: str = ''
    source_layout: str = ''
    target: str = ''
    target_layout: str = ''
    prefix: str = ''
    dropped_components: dict = field(default_factory=dict)
    loaded: list = field(default_factory=list)
    renamed: int = 0
    resized: list = field(default_factory=list)  # (key, from, to, how)
    synthesized: list = field(default_factory=list)  # (key, why)
    folded: list = field(default_factory=list)  # (key, into)
    dropped_exact: list = field(default_factory=list)  # (key, why)
    derived: list = field(default_factory=list)
    new_by_design: list = field(default_factory=list)  # (key, why)
    dropped_by_design: list = field(default_factory=list)  # (key, why)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    shape_mismatch: list = field(default_factory=list)  # (key, src, dst)
    # non-shape architecture facts that differ: (fact, source, target, source's origin)
    arch_mismatch: list = field(default_factory=list)
    arch_checked: str = ''  # the facts compared, e.g. 'num_heads 4, depth 4 (meta.cfg)'
    notes: list = field(default_factory=list)
    verified: Optional[str] = None
    verify_failures: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch
                    or self.arch_mismatch or self.verify_failures)

    def format(self) -> str:
        dropped = ', '.join(f'{k} {v}' for k, v in self.dropped_components.items())
        lines = [
            'CIM -> downstream checkpoint conversion',
            f'  source            : {self.source} (enhancer: {self.source_layout})',
            f'  target            : {self.target} [{self.target_layout}]'
            + (f", keys prefixed '{self.prefix}'" if self.prefix else ''),
            f'  dropped on purpose: {dropped} keys (only the enhancer is kept)',
            f'  loaded            : {len(self.loaded)} tensors from the enhancer '
            f'({self.renamed} renamed)',
        ]

        def block(title, items, fmt):
            lines.append(f'  {title:<18}: {len(items)}' +
                         (f'  {short([fmt(i) for i in items])}' if items else ''))

        def grouped(title, items):
            lines.append(f'  {title:<18}: {len(items)}')
            groups = OrderedDict()
            for key, why in items:
                groups.setdefault(why, []).append(key)
            for why, keys in groups.items():
                lines.append(f'      {len(keys):>4} x {why}: {short(keys, 4)}')

        block('resized', self.resized, lambda r: f'{r[0]} {tuple(r[1])}->{tuple(r[2])} ({r[3]})')
        grouped('synthesized exact', self.synthesized)
        grouped('folded exact', [(k, f'layer scale folded into {v.split(".", 1)[-1]}')
                                 for k, v in self.folded])
        grouped('dropped exact', self.dropped_exact)
        grouped('derived buffers', [(k, 'copied from the target (not learned)')
                                    for k in self.derived])
        grouped('new by design', self.new_by_design)
        grouped('dropped by design', self.dropped_by_design)
        block('MISSING', self.missing, str)
        block('UNEXPECTED', self.unexpected, str)
        block('SHAPE MISMATCH', self.shape_mismatch,
              lambda r: f'{r[0]} source {tuple(r[1])} target {tuple(r[2])}')
        if self.arch_checked:
            lines.append(f'  architecture      : {self.arch_checked}')
        block('ARCH MISMATCH', self.arch_mismatch,
              lambda r: f'{r[0]} source {r[1]} ({r[3]}) target {r[2]}')
        for note in self.notes:
            lines.append(f'  note: {note}')
        if self.verified:
            lines.append(f'  verified          : {self.verified}')
        for f in self.verify_failures:
            lines.append(f'  VERIFY FAILED     : {f}')
        lines.append('RESULT: ' + ('OK' if self.ok else 'MISMATCH'))
        return '\n'.join(lines)

    def summary(self) -> dict:
        """Plain-type summary (stored in the converted file's ``meta``)."""
        return dict(
            source=osp.basename(self.source), source_layout=self.source_layout,
            target=self.target, target_layout=self.target_layout, prefix=self.prefix,
            dropped_components=dict(self.dropped_components), loaded=len(self.loaded),
            resized=[r[0] for r in self.resized],
            synthesized=[r[0] for r in self.synthesized],
            folded=[r[0] for r in self.folded],
            new_by_design=[r[0] for r in self.new_by_design],
            dropped_by_design=[r[0] for r in self.dropped_by_design],
            missing=list(self.missing), unexpected=list(self.unexpected),
            shape_mismatch=[r[0] for r in self.shape_mismatch],
            arch_mismatch=[f'{r[0]}: source {r[1]}, target {r[2]}'
                           for r in self.arch_mismatch], ok=self.ok)

