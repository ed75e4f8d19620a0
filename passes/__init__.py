"""edgec's optimization passes, one file per pass or close family; importing registers them."""

from . import dce, fold_constants, cse, eliminate_noop, simplify_shapes  # noqa: F401  (clean-ups)
from . import fuse_qdq  # noqa: F401  (quantized patterns -> integer ops)
from . import recognize, fuse_linear, fuse_elementwise, fuse_epilogue, convert_layout  # noqa: F401  (recognition, fusion, layout)
from . import convert_precision  # noqa: F401  (float16)
