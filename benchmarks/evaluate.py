"""Evaluation of a pre-trained backbone on Fashion-MNIST classification.

* features: the backbone (``out_type='raw'``, final norm) on clean images;
  the feature is the mean of the patch tokens (the same for every method: the
  class token is not trained by most MIM objectives);
* :func:`knn_predict` -- weighted k-NN (InstDisc / DINO protocol): cosine
  similarity of L2-normalised features, the ``k`` nearest train features vote
  for their class with weight ``exp(sim / T)``;
* :func:`linear_probe` -- multinomial logistic regression on standardised
  frozen features, full-batch L-BFGS;
* :func:`finetune` -- the whole backbone + a linear head trained end to end
  (AdamW, warm-up + cosine, horizontal flips) for a few epochs on a subset.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ------------------------------------------------------------------ backbone
def build_eval_backbone(cfg: dict, state_dict: Optional[dict] = None,
                        ignore: tuple = ('mask_token', ), fresh: tuple = ()) -> nn.Module:
    """Build a plain backbone, initialise it, load pre-trained weights.

    ``fresh``: key prefixes (``'norm2.'``) that keep their initialisation for
    every method: dropped from the weights, allowed to be missing (the output
    norms of a hierarchical backbone, which some peers do not train).

    Raises ``KeyError`` when the pre-trained weights miss any of its keys or
    carry unknown ones (other than ``ignore`` and ``fresh``): a silent partial
    load would make the benchmark lie.
    """
    from mmpretrain.registry import MODELS
    backbone = MODELS.build(dict(cfg))
    backbone.init_weights()
    if state_dict is not None:
        sd = {k: v for k, v in state_dict.items()
              if k.split('.')[0] not in ignore and not k.startswith(tuple(fresh))}
        missing, unexpected = backbone.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.startswith(tuple(fresh))]
        if missing or unexpected:
            raise KeyError(f'pre-trained backbone does not match {cfg["type"]}: '
                           f'missing {missing[:5]}, unexpected {unexpected[:5]}')
    return backbone


def pooled_features(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> [B, C]: mean of the final-normed patch tokens (ViT,
    ``[B, N, C]``) or global average of the last feature map (CNN,
    ``[B, C, h, w]``)."""
    out = backbone(x)
    tokens = out[-1] if isinstance(out, (list, tuple)) else out  # [B, N, C]
    if tokens.dim() == 4:  # CNN feature map [B, C, h, w]
        return tokens.mean(dim=(2, 3))
    extra = getattr(backbone, 'num_extra_tokens', 1)
    return tokens[:, extra:].mean(dim=1)


@torch.no_grad()
def extract_features(backbone: nn.Module, images, batch_size: int,
                     device: torch.device, log: Optional[Callable[[str], None]] = None,
                     what: str = 'features') -> tuple[torch.Tensor, torch.Tensor]:
    """-> (features [N, C] float32 on CPU, labels [N])."""
    backbone.eval()
    feats, labels = [], []
    n = len(images)
    t0 = time.perf_counter()
    t_log = t0
    for x, y in images.batches(batch_size):
        feats.append(pooled_features(backbone, x.to(device)).float().cpu())
        labels.append(y)
        now = time.perf_counter()
        if log is not None and now - t_log > 10:
            t_log = now
            done = sum(len(f) for f in feats)
            log(f'{what} {done}/{n} | ETA {(now - t0) / done * (n - done):.0f} s')
    return torch.cat(feats), torch.cat(labels)


# ---------------------------------------------------------------------- k-NN
def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor,
                test_feats: torch.Tensor, k: int = 20, temperature: float = 0.07,
                num_classes: Optional[int] = None, chunk: int = 1024) -> torch.Tensor:
    """Weighted k-NN on cosine similarity -> predicted labels [N_test].

    Each of the ``k`` most similar train features adds ``exp(sim / T)`` to its
    class; the class with the largest sum wins (ties: smallest class id).
    """
    num_classes = num_classes or int(train_labels.max()) + 1
    k = min(k, len(train_feats))
    tr = F.normalize(train_feats.float(), dim=1)
    preds = []
    for start in range(0, len(test_feats), chunk):
        te = F.normalize(test_feats[start:start + chunk].float(), dim=1)
        sim = te @ tr.t()  # [n, N_train]
        top_sim, top_idx = sim.topk(k, dim=1)  # [n, k]
        votes = torch.zeros(len(te), num_classes, dtype=torch.float64)
        votes.scatter_add_(1, train_labels[top_idx], (top_sim.double() / temperature).exp())
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


def top1(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return 100. * float((pred == labels).float().mean())


def knn_top1(train_feats, train_labels, test_feats, test_labels, k: int = 20,
             temperature: float = 0.07) -> float:
    return top1(knn_predict(train_feats, train_labels, test_feats, k, temperature),
                test_labels)


# -------------------------------------------------------------- linear probe
def linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor,
                 test_feats: torch.Tensor, test_labels: torch.Tensor,
                 weight_decay: float = 1e-4, max_iter: int = 200,
                 num_classes: Optional[int] = None) -> float:
    """Logistic regression on frozen, standardised features (full-batch L-BFGS).

    Returns test top-1 (%).
    """
    num_classes = num_classes or int(train_labels.max()) + 1
    x = train_feats.double()
    mean, std = x.mean(0, keepdim=True), x.std(0, keepdim=True).clamp(min=1e-6)
    x = (x - mean) / std
    xt = (test_feats.double() - mean) / std
    lin = nn.Linear(x.shape[1], num_classes).double()
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1., max_iter=max_iter,
                            history_size=20, line_search_fn='strong_wolfe',
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(x), train_labels) + \
            weight_decay * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return top1(lin(xt).argmax(1), test_labels)


# ----------------------------------------------------------------- fine-tune
class _Classifier(nn.Module):

    def __init__(self, backbone: nn.Module, embed_dims: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(embed_dims, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_features(self.backbone, x))


def finetune(backbone: nn.Module, embed_dims: int, train_images, test_images,
             device: torch.device, epochs: int = 1, batch_size: int = 64,
             lr: float = 5e-4, weight_decay: float = 0.05, warmup_frac: float = 0.1,
             seed: int = 0, num_classes: int = 10, amp_dtype=None,
             log: Optional[Callable[[str], None]] = None) -> float:
    """Fine-tune backbone + linear head; returns test top-1 (%)."""
    model = _Classifier(backbone, embed_dims, num_classes).to(device)
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or 'token' in n or 'pos_embed' in n else decay).append(p)
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=weight_decay),
                             dict(params=no_decay, weight_decay=0.)], lr=lr)
    rng = np.random.default_rng(seed)
    n = len(train_images)
    steps_per_epoch = max(n // batch_size, 1)
    total = steps_per_epoch * epochs
    step = 0
    t0 = time.perf_counter()
    t_log = t0
    model.train()
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(steps_per_epoch):
            idx = order[s * batch_size:(s + 1) * batch_size]
            flip = rng.random(len(idx)) < 0.5
            x = train_images.batch(idx, flip).to(device)
            y = train_images.labels[idx].to(device)
            p = step / total
            f = p / warmup_frac if p < warmup_frac else \
                0.5 * (1 + math.cos(math.pi * (p - warmup_frac) / (1 - warmup_frac)))
            for g in opt.param_groups:
                g['lr'] = lr * max(f, 1e-3)
            with torch.autocast(torch.device(device).type, dtype=amp_dtype,
                                enabled=amp_dtype is not None):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
            opt.step()
            step += 1
            now = time.perf_counter()
            if log is not None and now - t_log > 10:
                t_log = now
                log(f'fine-tune | step {step}/{total} | loss {float(loss.detach()):.3f} | '
                    f'ETA {(now - t0) / step * (total - step):.0f} s')
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in test_images.batches(256):
            correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
    return 100. * correct / len(test_images)
