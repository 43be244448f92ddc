"""The paper's controlled Gaussian experiments (Section 3, Appendix 4.1-4.2; Figures 1-5).

Deep linear networks on a whitened 16-dimensional Gaussian with noisy views, trained with VICReg,
InfoNCE or an EMA teacher, with and without WERank. Run them with
``python -m bgrl_werank.toy --figure N`` (see :mod:`bgrl_werank.toy.cli`).
"""

from .config import ToyConfig, build_config, load_config
from .experiments import run_figure, run_specs
from .train import RunSpec, train_run

__all__ = ["ToyConfig", "build_config", "load_config", "RunSpec", "train_run", "run_figure", "run_specs"]
