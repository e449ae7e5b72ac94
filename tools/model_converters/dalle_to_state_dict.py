"""Convert OpenAI's DALL-E dVAE pickles into one plain-tensor checkpoint.

Usage::

    python tools/model_converters/dalle_to_state_dict.py \
        encoder.pkl decoder.pkl dalle_dvae.pth

``encoder.pkl`` / ``decoder.pkl`` are https://cdn.openai.com/dall-e/encoder.pkl
and https://cdn.openai.com/dall-e/decoder.pkl (pickled ``dall_e`` modules).
They are read without running pickled code (see
``cim_mm.models.tokenizers.dalle.load_dalle_state_dict``). The output is ONE
file ``{'encoder': state_dict, 'decoder': state_dict}`` of plain tensors, with
the reference key names; use it for both paths of the tokenizer::

    tokenizer=dict(type='DALLETokenizer',
                   encoder_path='dalle_dvae.pth', decoder_path='dalle_dvae.pth')
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
import warnings

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # mmengine's import

from cim_mm.models.tokenizers.dalle import load_dalle_state_dict  # noqa: E402
from cim_mm.utils import atomic_torch_save  # noqa: E402
from cim_mm.utils.cli import user_errors_as_one_line  # noqa: E402


def convert(encoder_pkl: str, decoder_pkl: str, out: str) -> dict[str, dict[str, torch.Tensor]]:
    """Read both pickles safely and save ``{'encoder': sd, 'decoder': sd}`` to ``out``."""
    ckpt = {
        # .contiguous().clone(): own, compact storages (no views into shared blobs)
        part: {k: v.contiguous().clone() for k, v in load_dalle_state_dict(path, part).items()}
        for part, path in (('encoder', encoder_pkl), ('decoder', decoder_pkl))
    }
    atomic_torch_save(ckpt, out)
    return ckpt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('encoder', help='official encoder.pkl')
    parser.add_argument('decoder', help='official decoder.pkl')
    parser.add_argument('out', help='output .pth ({"encoder": sd, "decoder": sd})')
    args = parser.parse_args()
    with user_errors_as_one_line('dalle_to_state_dict.py'):  # a missing / refused file
        ckpt = convert(args.encoder, args.decoder, args.out)
    n = {p: sum(t.numel() for t in sd.values()) for p, sd in ckpt.items()}
    print(f'saved {args.out}: encoder {n["encoder"] / 1e6:.1f} M, '
          f'decoder {n["decoder"] / 1e6:.1f} M parameters')


if __name__ == '__main__':
    main()
