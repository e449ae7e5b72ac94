from .attention_kernels import ATTN_IMPLS  # noqa: F401
from .beit_drop_path import BEIT_SINGLE_DROP_PATH  # noqa: F401
from .sdpa_beit import SDPABEiTPretrainViT, SDPABEiTViT  # noqa: F401
from .sdpa_beit_attention import SDPABEiTAttention, use_sdpa_attention  # noqa: F401
