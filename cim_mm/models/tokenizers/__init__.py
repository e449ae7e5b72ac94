from .base import BaseTokenizer, map_pixels, unmap_pixels  # noqa: F401
from .dalle import DALLETokenizer, load_dalle_state_dict  # noqa: F401
from .vq_tokenizer import VQTokenizer, evaluate_psnr  # noqa: F401
