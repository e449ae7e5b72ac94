"""The GPU check; run it through ``tools/gpu_check.sh``.

    python tools/gpu_check.py [--dry-run] [--out DIR] [--batch-size 128]
        [--peak-tflops 989.4] [--dalle-dir DIR] [--only STAGE,...]

Writes ``OUT/results.json`` and ``OUT/results.md``; see docs/gpu/README.md.
Exit status: 0 when every stage ran (targets missed are figures, not
failures), 1 when a stage failed, 2 for a usage error, 3 for a REGRESSION (a
step slower than the last measured row of the same device, or a compiled
region that recompiles or breaks; see benchmarks/gpu_check/regressions.py).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import signal
import sys
import warnings

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # mmengine's import
# pure-Python packages packed by `tools/gpu_check.sh --pack-deps` for a bare GPU machine
DEPS = os.environ.get('CIM_GPU_DEPS') or osp.join(ROOT, 'work_dirs', 'gpu_deps')


def use_packed_deps() -> list[str]:
    """When this Python lacks the OpenMMLab stack, put the packed copy first on
    ``sys.path`` and ``PYTHONPATH`` (for tools/train.py runs). Returns the paths added."""
    try:
        import torch  # noqa: F401
    except ImportError as err:
        sys.exit(f'gpu_check.py: {err}: run with a Python that has torch '
                 '(set PYTHON=... for tools/gpu_check.sh)')
    try:
        import dall_e, mmcv, mmengine, mmpretrain  # noqa: F401,E401
        return []
    except ImportError as err:
        if not osp.isdir(osp.join(DEPS, 'site')):
            sys.exit(f'gpu_check.py: {err}; where the project .venv is, run `bash '
                     'tools/gpu_check.sh --pack-deps` and bring work_dirs/gpu_deps here '
                     '(or set CIM_GPU_DEPS)')
    for name in [m for m in sys.modules if m.split('.')[0] in (
            'dall_e', 'mmcv', 'mmengine', 'mmpretrain')]:
        del sys.modules[name]  # half-imported from this machine's packages
    added = [osp.join(DEPS, 'site')]
    import importlib
    for name in ('pkg_resources', 'distutils'):  # mmengine 0.10.7 imports both
        try:
            importlib.import_module(name)
        except ImportError:  # setuptools >= 81 / Python >= 3.12 without them
            added.append(osp.join(DEPS, 'compat', name))
    sys.path[1:1] = added
    old = [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
    os.environ['PYTHONPATH'] = os.pathsep.join([ROOT, *added, *old])
    return added


PACKED = use_packed_deps()

from benchmarks.gpu_check.settings import (  # noqa: E402
    H100_SXM_BF16_DENSE_TFLOPS, full_settings, toy_settings)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from benchmarks.gpu_check.check import STAGES
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--dry-run', action='store_true',
                   help='every stage at toy size on the CPU (CI; ~1 min on idle cores)')
    p.add_argument('--out', default=None,
                   help='folder for results.json / results.md (default: benchmarks/results/gpu/<UTC date>, '
                   'or a temporary folder with --dry-run)')
    p.add_argument('--batch-size', type=int, default=None,
                   help='images per step (default 128; 4 with --dry-run); halved on '
                   'out-of-memory')
    p.add_argument('--num-workers', type=int, default=None,
                   help="loader workers (default: the recipe's 8, capped at CPUs - 1)")
    p.add_argument('--peak-tflops', type=float, default=H100_SXM_BF16_DENSE_TFLOPS,
                   help='the card\'s dense bf16 peak for MFU (default: H100 SXM5, '
                   f'{H100_SXM_BF16_DENSE_TFLOPS}; H100 PCIe: 756)')
    p.add_argument('--budget-s', type=float, default=None,
                   help='total seconds for the stages (default 440; 170 dry run)')
    p.add_argument('--dalle-dir', default=None,
                   help='folder with real encoder.pkl / decoder.pkl (default: random '
                   'weights in the official format, written on the fly)')
    p.add_argument('--only', default=None,
                   help=f'comma-separated stages to run (of {", ".join(STAGES)})')
    p.add_argument('--tolerance', type=float, default=None,
                   help='a step this much slower than the last measured row of the same '
                   'device is a REGRESSION (default 0.10)')
    p.add_argument('--keep-tmp', action='store_true', help='keep the scratch folder')
    args = p.parse_args(argv)
    if args.only:
        args.only = [s.strip() for s in args.only.split(',') if s.strip()]
        unknown = [s for s in args.only if s not in STAGES]
        if unknown:
            p.error(f'unknown stage(s) {", ".join(unknown)}; choose from {", ".join(STAGES)}')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    make = toy_settings if args.dry_run else full_settings
    kw = dict(peak_tflops=args.peak_tflops)
    for key, val in (('batch_size', args.batch_size), ('num_workers', args.num_workers),
                     ('total_budget_s', args.budget_s)):
        if val is not None:
            kw[key] = val
    settings = make(**kw)
    import torch
    if not args.dry_run and not torch.cuda.is_available():
        print('gpu_check.py: no CUDA device visible; run with --dry-run on a machine '
              'without a GPU', file=sys.stderr)
        return 2
    if args.dalle_dir and not all(osp.isfile(osp.join(args.dalle_dir, f))
                                  for f in ('encoder.pkl', 'decoder.pkl')):
        print(f'gpu_check.py: {args.dalle_dir} must hold encoder.pkl and decoder.pkl',
              file=sys.stderr)
        return 2
    out = args.out
    if out is None:
        if args.dry_run:
            import tempfile
            out = tempfile.mkdtemp(prefix='cim_gpu_check_dry_')
        else:
            import datetime
            day = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d')
            out = osp.join(ROOT, 'benchmarks', 'results', 'gpu', day)
    from benchmarks.gpu_check.check import run_check
    from benchmarks.gpu_check.regressions import TOLERANCE
    if PACKED:
        print(f'gpu_check | packed dependencies: {", ".join(PACKED)}', flush=True)

    # the shell's hard cap sends SIGTERM: unwind, so the results file says so
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    res = run_check(settings, osp.abspath(out), dalle_dir=args.dalle_dir, only=args.only,
                    keep_tmp=args.keep_tmp, log=lambda s: print(s, flush=True),
                    tolerance=TOLERANCE if args.tolerance is None else args.tolerance)
    if res.get('missing_fields'):
        print('gpu_check.py: fields missing: ' + ', '.join(res['missing_fields']),
              file=sys.stderr)
    if res.get('regressions'):
        return 3
    return 0 if res['status'] == 'complete' else 1


if __name__ == '__main__':
    os.environ.setdefault('PYTHONUNBUFFERED', '1')
    sys.exit(main())
