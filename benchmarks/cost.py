"""Cost measurement: peak memory, synchronised timers, CIM step breakdown.

* Memory: on CUDA ``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats``; on CPU the process's peak resident set size
  (``VmHWM``) after resetting it through ``/proc/self/clear_refs`` (Linux >= 4.0),
  minus the resident size before pre-training. Where the reset is not allowed,
  ``ru_maxrss`` is used (a peak since process start: the delta is then a lower
  bound, and ``peak_rss_mb`` is the honest figure).
* Timers: ``time.perf_counter`` around ``torch.cuda.synchronize()`` on CUDA.
* :class:`CIMStepProfiler`: wraps the CIM model's corruption-path calls
  (tokenizer encode, generator forward, sampling, decode, the rest of
  ``corrupt``) and the enhancer (backbone, neck, head) on the instance, and
  splits the backward in two (generator / enhancer: their graphs are disjoint,
  so two ``backward`` calls give the same gradients as one).
"""
from __future__ import annotations

import contextlib
import os
import resource
import time
from collections import defaultdict
from typing import Callable, Iterator, Optional

import torch

MB = 1024.**2


def _read_status_kb(key: str) -> Optional[float]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


class MemoryMeter:
    """Peak memory of a code region (see module doc)."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.method = ''
        self.baseline_mb = 0.
        self.peak_mb = 0.

    def start(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_mb = torch.cuda.memory_allocated(self.device) / MB
            self.method = 'torch.cuda.max_memory_allocated'
            return
        rss = _read_status_kb('VmRSS')
        self.baseline_mb = (rss or 0.) / 1024.
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')  # reset VmHWM to the current RSS
            self.method = 'VmHWM after clear_refs (peak RSS of the region)'
        except OSError:
            self.method = 'ru_maxrss (peak RSS since process start)'

    def stop(self) -> dict:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / MB
        elif self.method.startswith('VmHWM'):
            self.peak_mb = (_read_status_kb('VmHWM') or 0.) / 1024.
        else:
            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.
        return dict(peak_mem_mb=round(self.peak_mb, 1),
                    mem_delta_mb=round(max(self.peak_mb - self.baseline_mb, 0.), 1),
                    mem_baseline_mb=round(self.baseline_mb, 1),
                    mem_method=self.method)


def synchronizer(device: torch.device) -> Callable[[], None]:
    device = torch.device(device)
    if device.type == 'cuda':
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


class SegmentTimer:
    """Accumulates synchronised wall time per named segment."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.totals: dict[str, float] = defaultdict(float)
        self.enabled = False

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.totals[name] += time.perf_counter() - t0

    def wrap(self, fn: Callable, name: str) -> Callable:
        def wrapped(*args, **kwargs):
            with self(name):
                return fn(*args, **kwargs)
        wrapped.__wrapped__ = fn
        return wrapped


# Segments of a CIM step; nested segments are subtracted from their parent.
CORRUPTION_SEGMENTS = ('tok_encode', 'gen_fwd', 'gen_bwd', 'sample', 'tok_decode',
                       'corrupt_other')
ENHANCER_SEGMENTS = ('enh_fwd', 'enh_bwd')
OTHER_SEGMENTS = ('preprocess', 'optim_step', 'other')


class CIMStepProfiler:
    """Times the parts of a CIM training step (see module doc).

    ``step(data, optim_wrapper)`` is ``model.train_step`` with the same maths;
    call it on the steps to profile (timing adds synchronisations on CUDA, so
    there only every few steps are profiled; on CPU every step is).
    """

    def __init__(self, model, device: torch.device) -> None:
        self.model = model
        self.timer = SegmentTimer(synchronizer(device))
        self.records: list[dict] = []
        t = self.timer
        tok, gen = model.tokenizer, model.generator
        tok.encode = t.wrap(tok.encode, 'tok_encode')
        tok.decode = t.wrap(tok.decode, 'tok_decode')
        gen.forward = t.wrap(gen.forward, 'gen_fwd')
        gen.sample = t.wrap(gen.sample, 'sample')
        model.corrupt = t.wrap(model.corrupt, 'corrupt')
        model.backbone.forward = t.wrap(model.backbone.forward, 'enh_backbone')
        if getattr(model, 'neck', None) is not None:
            model.neck.forward = t.wrap(model.neck.forward, 'enh_neck')
        model.head.loss = t.wrap(model.head.loss, 'enh_head')

    def step(self, data: dict, optim_wrapper) -> dict:
        model, t = self.model, self.timer
        t.totals.clear()
        t.enabled = True
        t.sync()
        t0 = time.perf_counter()
        with optim_wrapper.optim_context(model):
            with t('preprocess'):
                data = model.data_preprocessor(data, True)
            losses = model._run_forward(data, mode='loss')
        gen_loss = losses['loss_gen']
        enh_loss = sum(v for k, v in losses.items() if 'loss' in k and k != 'loss_gen')
        with t('enh_bwd'):
            if torch.is_tensor(enh_loss) and enh_loss.requires_grad:  # 0 in a generator warm-up
                optim_wrapper.backward(enh_loss)
        with t('gen_bwd'):
            optim_wrapper.backward(gen_loss)
        with t('optim_step'):
            optim_wrapper.step()
            optim_wrapper.zero_grad()
        t.sync()
        t.enabled = False
        rec = dict(t.totals)
        rec['step'] = time.perf_counter() - t0
        self.records.append(rec)
        _, log_vars = model.parse_losses(losses)
        return log_vars

    def breakdown(self, skip: int = 0) -> dict:
        """Mean seconds per profiled step for each segment, and shares.

        The first ``skip`` profiled steps (warm-up) are left out when more
        than ``skip`` were profiled.
        """
        recs = self.records[skip:] if len(self.records) > skip else self.records
        n = max(len(recs), 1)
        tot: dict = defaultdict(float)
        for r in recs:
            for k, v in r.items():
                tot[k] += v / n
        seg = dict(
            preprocess=tot['preprocess'],
            tok_encode=tot['tok_encode'],
            gen_fwd=tot['gen_fwd'],
            gen_bwd=tot['gen_bwd'],
            sample=tot['sample'],
            tok_decode=tot['tok_decode'],
            corrupt_other=max(tot['corrupt'] - tot['sample'] - tot['tok_decode'], 0.),
            enh_fwd=tot['enh_backbone'] + tot['enh_neck'] + tot['enh_head'],
            enh_bwd=tot['enh_bwd'],
            optim_step=tot['optim_step'],
        )
        step = tot['step']
        seg['other'] = max(step - sum(seg.values()), 0.)
        corruption = sum(seg[k] for k in CORRUPTION_SEGMENTS)
        enhancer = sum(seg[k] for k in ENHANCER_SEGMENTS)
        return dict(
            profiled_steps=len(recs), step_s=step,
            segments_s={k: round(v, 6) for k, v in seg.items()},
            corruption_s=corruption, enhancer_s=enhancer,
            corruption_share=corruption / step if step else 0.,
            enhancer_share=enhancer / step if step else 0.,
            other_share=max(1 - (corruption + enhancer) / step, 0.) if step else 0.)


def cpu_threads() -> int:
    return torch.get_num_threads()


def device_name(device: torch.device) -> str:
    device = torch.device(device)
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'CPU ({os.cpu_count()} cores visible, {torch.get_num_threads()} torch threads)'
