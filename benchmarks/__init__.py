"""CIM against the other MIM methods, side by side (``tools/benchmark.py``).

One concept per module:

* :mod:`.scales`    -- the shared backbone / data / recipe (``cpu-small``, ``gpu``);
* :mod:`.specs`     -- the methods (CIM-ResPix/RevDet, MAE, SimMIM, BEiT v1,
  MaskFeat, SimCLR, DenseCL, random init) as mmpretrain model configs;
* :mod:`.adapters`  -- the three small adapters the peers need on this ViT;
* :mod:`.data`      -- Fashion-MNIST loader and eval arrays;
* :mod:`.pretrain`  -- the wall-clock-budgeted pre-training loop;
* :mod:`.cost`      -- peak memory, timers, the CIM step breakdown;
* :mod:`.flops`     -- FLOP counts (DALL-E encoder/decoder, ViT-B, CIM/BEiT);
* :mod:`.evaluate`  -- k-NN, linear probe, short fine-tune;
* :mod:`.report`    -- results.md / .json / .csv and the PNG plots;
* :mod:`.worker`    -- one method end to end (own process);
* :mod:`.runner`    -- all methods: resume, progress / ETA, failures.

Importing this package is light; the heavy modules import mmpretrain lazily.
"""
