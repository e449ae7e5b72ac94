"""The GPU check (``tools/gpu_check.sh``).

On one GPU (H100), in at most 8 minutes: step time, counted-FLOP MFU and peak
memory of CIM-ResPix, CIM-RevDet, BEiT v1 (same DALL-E tokenizer) and MAE on
ViT-B/16 at 224 px in bf16; the images/s the recipe's JPEG loader sustains;
max |bf16 - fp32| of the DALL-E decode; AMP kill-and-resume through
``tools/train.py``. ``--dry-run`` runs every stage at toy size on a CPU.

* :mod:`.settings` -- sizes, budgets, targets (full / toy);
* :mod:`.assets`   -- official-format DALL-E files, a folder of JPEGs;
* :mod:`.models`   -- the methods' model / loader / optimizer configs;
* :mod:`.steps`    -- one method's step time, FLOPs, MFU, memory;
* :mod:`.stages`   -- matmul ceiling, loader, decode precision;
* :mod:`.resume`, :mod:`.hooks` -- the kill-and-resume run;
* :mod:`.check`    -- the stages in order, with time limits;
* :mod:`.results`  -- results.json / results.md, the targets.
"""
