"""What the GPU check measures, at full size (one GPU) or toy size (``--dry-run``).

Full size is the acceptance run: ViT-B/16 at 224 px, bf16 autocast
(``AmpOptimWrapper(dtype='bfloat16')``), the full-size DALL-E dVAE in the
official file format, a few hundred JPEGs. Toy size runs every stage on a CPU
in well under a minute: a 2-layer ViT at 64 px (16 px patches, 4x4 grid), a
tiny DALL-E-format tokenizer (vocab 64) at 32 px, a handful of images, fp32.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

# H100 SXM5 dense bf16 tensor-core peak, TFLOP/s (NVIDIA H100 datasheet, SXM
# column; 1979 is the 2:4-sparse figure). H100 PCIe: 756; H200 SXM: 989.4.
H100_SXM_BF16_DENSE_TFLOPS = 989.4

# the methods timed at the batch size, in the order they run (CIM-ResPix first:
# the largest memory, so a batch that fits it fits the others); the large
# batch times LARGE_BATCH_METHODS again
METHODS = ('cim-respix', 'beit', 'cim-resnet50', 'cim-revdet', 'mae', 'cim-convnext-t',
           'cim-swin-t')
LARGE_BATCH_METHODS = ('cim-respix', 'beit')
# the methods whose GPU switches are timed on and off (the switches stage)
SWITCH_METHODS = ('cim-respix', )
# the feature-map recipes, whose enhancer compile is timed on and off (the
# enhancer_compile stage)
ENHANCER_METHODS = ('cim-resnet50', 'cim-convnext-t', 'cim-swin-t')

# tiny DALL-E / ViT of the dry run (the layout of the official model, shrunk)
TOY_DALLE = dict(vocab_size=64, n_hid=16, n_blk_per_group=1, n_init=8)
TOY_VIT = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
TOY_GENERATOR = dict(embed_dims=16, num_layers=1, num_heads=2, feedforward_channels=32)


@dataclass
class CheckSettings:
    """Sizes, budgets and targets of one run of the check."""
    dry_run: bool
    batch_size: int
    large_batch: int  # the second batch size of CIM-ResPix and BEiT v1
    img_size: int  # enhancer input (px)
    num_images: int  # JPEGs written for the loader
    jpeg_side: tuple  # (min, max) side of the JPEGs (px)
    num_workers: int  # loader workers (None in the CLI: the recipe's, capped)
    warmup_steps: int
    timed_steps: int
    loader_seconds: float  # how long the loader is timed (after its first batch)
    peak_tflops: float
    total_budget_s: float
    stage_limits_s: dict = field(default_factory=dict)
    min_batch: int = 8  # OOM halving stops here
    resume_iters: int = 3  # checkpoint (and kill) after this many; resumed to 2x
    decode_batch: int = 8
    # the targets (benchmarks, not timed tests)
    target_ratio: float = 1.5  # CIM step / BEiT v1 step
    target_mfu: float = 0.40
    flop_ratio_expected: float = 1.43  # CIM / BEiT FLOPs per step (DESIGN.md, counted)
    # GFLOPs per image of the plain training step (no fast path: all-token
    # generator head, full-resolution decoder), counted on a CPU (fp32, batch 2,
    # FlopCounterMode; DESIGN.md): the work MFU is measured against (full size)
    plain_gflops: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def full_settings(peak_tflops: float = H100_SXM_BF16_DENSE_TFLOPS,
                  batch_size: int = 128, num_workers: int = 8,
                  total_budget_s: float = 440.) -> CheckSettings:
    """One H100, at most ~7.3 minutes of stages (the shell's hard cap is 8).

    The CIM stages include compiling (inductor, the first step after the
    hook): the stage limits leave room for it; the large batch compiles again
    (new shapes)."""
    return CheckSettings(
        dry_run=False, batch_size=batch_size, large_batch=2 * batch_size, img_size=224,
        num_images=512, jpeg_side=(320, 560), num_workers=num_workers, warmup_steps=3,
        timed_steps=10, loader_seconds=6., peak_tflops=peak_tflops,
        total_budget_s=total_budget_s,
        stage_limits_s={'assets': 60, 'matmul': 20, 'loader': 45, 'cim-respix': 150,
                        'beit': 90, 'switches': 150, 'large_batch': 150, 'cim-resnet50': 75,
                        'decode': 30,
                        'amp_resume': 120, 'cim-revdet': 60, 'mae': 30,
                        'cim-convnext-t': 60, 'cim-swin-t': 60, 'enhancer_compile': 240,
                        'loader_device_decode': 45},
        decode_batch=32,
        plain_gflops={'cim-respix': 229.3, 'cim-revdet': 228.6, 'beit': 160.1,
                      'mae': 56.3})


def toy_settings(peak_tflops: float = H100_SXM_BF16_DENSE_TFLOPS,
                 batch_size: int = 4, num_workers: int = 2,
                 total_budget_s: float = 170.) -> CheckSettings:
    """Every stage at toy size on a CPU (the CI test runs this)."""
    return CheckSettings(
        dry_run=True, batch_size=batch_size, large_batch=2 * batch_size, img_size=64, num_images=16,
        jpeg_side=(48, 96), num_workers=num_workers, warmup_steps=1, timed_steps=2,
        loader_seconds=1., peak_tflops=peak_tflops, total_budget_s=total_budget_s,
        # CIM-ResPix traces the compile path (dynamo, backend eager): ~15 s of CPU
        stage_limits_s={'assets': 30, 'matmul': 10, 'loader': 30,
                        **{m: 30 for m in METHODS}, 'cim-respix': 60, 'large_batch': 40,
                        'switches': 40, 'enhancer_compile': 90,
                        'decode': 20, 'amp_resume': 120, 'loader_device_decode': 30},
        min_batch=2, decode_batch=2)
