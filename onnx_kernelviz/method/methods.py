"""A method is a parameterization of x' + an objective + loop settings (docs/METHOD.md), registered by name.

``--method mask`` (default): masks over the photo (``ExplainConfig.mask`` picks the parameterization), loss
preserve + suppress + area + TV, Adam. ``--method pixel``: Zhuang et al.'s own setup (arXiv 2108.11054), x'
optimized directly, the paper's terms with α = β = γ = 1, SGD with momentum. A new method is one subclass of
:class:`Method` registered in :data:`METHODS` (pytorch-grad-cam's ``BaseCAM`` habit): nothing else branches on
the method's name.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar, Literal

import torch

from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.method.objectives import (
    ImageL1,
    MaskArea,
    MaskTV,
    Objective,
    PaperPreserve,
    PaperSuppress,
    Preserve,
    Suppress,
    SuppressPartner,
    Term,
)
from onnx_kernelviz.method.optimize import OptimizeConfig
from onnx_kernelviz.method.perturb import PARAMETERIZATIONS, Parameterization
from onnx_kernelviz.registry import Registry

__all__ = ["Method", "MaskMethod", "PixelMethod", "METHODS"]


class Method:
    """The template: override :meth:`parameterization`, :meth:`terms` and the loop's own defaults."""

    #: the loop's own values, used where ExplainConfig leaves ``lr`` / ``min_steps`` / ``patience`` None
    lr: ClassVar[float]
    min_steps: ClassVar[int]
    patience: ClassVar[int]
    optimizer: ClassVar[Literal["adam", "sgd"]] = "adam"

    def parameterization(self, config: ExplainConfig) -> str:
        """The registered parameterization (``perturb.PARAMETERIZATIONS``) that builds x'."""
        raise NotImplementedError

    def param_options(self, config: ExplainConfig) -> dict[str, Any]:
        """Keyword options of the parameterization, from the config."""
        return {}

    def terms(self, config: ExplainConfig) -> list[tuple[float, Term]]:
        """The weighted loss terms (objectives.py)."""
        raise NotImplementedError

    def check(self, config: ExplainConfig) -> None:
        """Refuse settings this method cannot use (UsageError); called by ``ExplainConfig.validate``."""

    # -- shared ------------------------------------------------------------------------------------------------
    def resolve(self, config: ExplainConfig) -> ExplainConfig:
        """The config with this method's own loop values where it left them None (what results.json records)."""
        return replace(config, lr=self.lr if config.lr is None else config.lr,
                       min_steps=self.min_steps if config.min_steps is None else config.min_steps,
                       patience=self.patience if config.patience is None else config.patience)

    def objective(self, config: ExplainConfig) -> Objective:
        """:meth:`terms`, plus the partner term when ``compare`` singles out a partner kernel."""
        terms = self.terms(config)
        if config.contrast and config.partners:
            terms.append((config.contrast, SuppressPartner()))
        return Objective(terms)

    def loop(self, config: ExplainConfig) -> OptimizeConfig:
        c = self.resolve(config)
        assert c.lr is not None and c.min_steps is not None and c.patience is not None
        return OptimizeConfig(steps=c.steps, lr=c.lr, min_steps=c.min_steps, patience=c.patience, tol=c.tol,
                              optimizer=self.optimizer, early_stop=c.early_stop)

    def build(self, x: torch.Tensor, b: torch.Tensor, config: ExplainConfig) -> Parameterization:
        """The parameterization of x' for inputs ``x`` and references ``b`` ``[B, C, H, W]``."""
        param: Parameterization = PARAMETERIZATIONS.get(self.parameterization(config))(
            x, b, **self.param_options(config))
        return param

    def component_names(self, config: ExplainConfig) -> tuple[str, ...]:
        """Captions of a component mask's masks (mask_components.png), empty for a single mask."""
        names: tuple[str, ...] = getattr(PARAMETERIZATIONS.get(self.parameterization(config)), "NAMES", ())
        return names


METHODS: Registry[Method] = Registry("method")


class MaskMethod(Method):
    """Masks over the photo: x' = b + Σ m_c ⊙ comp_c (perturb.py); the default."""

    lr = 0.2
    min_steps = 20
    patience = 10

    def parameterization(self, config: ExplainConfig) -> str:
        return config.mask

    def param_options(self, config: ExplainConfig) -> dict[str, Any]:
        return {"resolution": config.resolution, "levels": config.levels, "fine_lr": config.fine_lr,
                "smooth": config.smooth, "init": config.init}

    def terms(self, config: ExplainConfig) -> list[tuple[float, Term]]:
        return [(config.preserve, Preserve(config.preserve_margin)), (config.suppress, Suppress()),
                (config.area, MaskArea(config.area_target)), (config.tv, MaskTV())]


class PixelMethod(Method):
    """The paper's setup: x' itself, the paper's terms with α = β = γ = 1, SGD (lr 0.1, momentum 0.9)."""

    lr = 0.1
    min_steps = 40
    patience = 20
    optimizer = "sgd"

    def parameterization(self, config: ExplainConfig) -> str:
        return "pixel"

    def terms(self, config: ExplainConfig) -> list[tuple[float, Term]]:
        return [(1.0, PaperPreserve()), (1.0, PaperSuppress()), (1.0, ImageL1())]


METHODS.register("mask")(MaskMethod())
METHODS.register("pixel")(PixelMethod())
