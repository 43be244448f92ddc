"""bgrl-werank: BGRL self-supervised pretraining on graphs with the WERank weight regularizer.

The library functions most users need are importable from the top level::

    from bgrl_werank import werank_penalty, encoder_weights, bgrl_loss
"""

import warnings as _warnings

# torch warns on every sparse CSR construction; the sparse paths here are tested against dense ones.
_warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
_warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")

from .losses import WERank, bgrl_loss, encoder_weights, gram, werank_penalty

__version__ = "0.1.0"
__all__ = ["werank_penalty", "WERank", "encoder_weights", "gram", "bgrl_loss", "__version__"]
