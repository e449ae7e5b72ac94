"""The GPU check (``tools/gpu_check.sh``).

On one GPU (H100), in at most 8 minutes, the steps as the recipes configure
them (fast path on: recipe optimizer, CompileBlocksHook, cudnn.benchmark):
step time at batch 128 and 256, MFU on the plain step's counted FLOPs, host
syncs per step, compile time and peak memory of CIM-ResPix, CIM-RevDet, the
ResNet-50 CIM recipe, BEiT v1 (same DALL-E tokenizer, same fixes) and MAE on
ViT-B/16 at 224 px in bf16; the images/s the recipe's JPEG loader sustains;
max |bf16 - fp32| of the DALL-E decode; AMP kill-and-resume through
``tools/train.py``; each GPU switch of the CIM-ResPix recipe on and off;
dynamo's recompiles and graph breaks per step. A step slower than the last
measured row of the device, or a recompile / graph break, is a REGRESSION
(exit status 3). ``--dry-run`` runs every stage at toy size on a CPU.

* :mod:`.settings` -- sizes, budgets, targets (full / toy);
* :mod:`.assets`   -- official-format DALL-E files, a folder of JPEGs;
* :mod:`.models`   -- the methods' model / loader / optimizer configs;
* :mod:`.fast_path` -- the recipes' speed settings applied, switches read back;
* :mod:`.steps`    -- one method's step time, FLOPs, MFU, host syncs, memory;
* :mod:`.syncs`    -- host syncs of a step (dispatch mode; CUDA sync debug);
* :mod:`.stages`   -- matmul ceiling, loader, decode precision;
* :mod:`.resume`, :mod:`.hooks` -- the kill-and-resume run;
* :mod:`.check`    -- the stages in order, with time limits, the GPU switches;
* :mod:`.regressions` -- what refuses a run (``reference.json``: last rows per device);
* :mod:`.deps`     -- the pure-Python packages for a bare GPU machine, the commit;
* :mod:`.results`  -- results.json / results.md, the targets.
"""
