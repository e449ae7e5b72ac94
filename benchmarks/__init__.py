"""CIM against the other MIM methods, side by side (``tools/benchmark.py``).

Outside the ``cim_mm`` package: it runs the repository's own tools and configs.
One concept per module:

* :mod:`.paths`       -- the repository root;
* :mod:`.scales`      -- the shared backbone / data / recipe (``cpu-small``, ``gpu``);
* :mod:`.spec_parts`  -- what a method is made of (``MethodSpec``, shared pipeline pieces);
* :mod:`.specs_vit`, :mod:`.specs_resnet`, :mod:`.specs_featmap` -- the methods of the
  ViT, ResNet and ConvNeXt / Swin tracks as mmpretrain model configs;
  :mod:`.ablations` -- the CIM ablations;
  :mod:`.specs` -- all of them by name;
* :mod:`.models`      -- models only the benchmark needs (peers' adapters, MEC, CIMAblation);
* :mod:`.recipe`      -- the recipe digest that decides what a resume reruns;
* :mod:`.data`        -- Fashion-MNIST loader and eval arrays;
* :mod:`.pretrain`    -- the budgeted pre-training loop; :mod:`.cpu_share` its guard;
* :mod:`.cost`        -- peak memory, timers, the CIM step breakdown;
* :mod:`.flops`       -- FLOP counts (DALL-E encoder/decoder, ViT-B, CIM/BEiT);
* :mod:`.evaluate`    -- k-NN, linear probe, short fine-tune;
* :mod:`.report`      -- results.md / .json / .csv and the PNG plots;
* :mod:`.worker`      -- one method end to end (own process);
* :mod:`.runner`      -- all methods: resume, progress / ETA, failures;
* the seg track: :mod:`.seg_specs` (rows, modes, configs), :mod:`.seg_data` (the scenes),
  :mod:`.seg_weights` (backbone.pth -> a seg config's weights), :mod:`.seg_config` (one run's
  config), :mod:`.seg_worker` (one run), :mod:`.seg_runner` (all runs), :mod:`.seg_report`;
* :mod:`.gpu_check`   -- the GPU check (``tools/gpu_check.sh``).
"""
import warnings

# mmengine imports setuptools' pkg_resources, which warns on every import
warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)
