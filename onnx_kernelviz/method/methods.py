"""A method is a parameterization of x' + an objective + loop settings (docs/METHOD.md), registered by name.

``--method mask`` (default): masks over the photo (``ExplainConfig.mask`` picks the parameterization), loss
preserve + suppress + area + TV, Adam. ``--method pixel``: Zhuang et al.'s own setup (arXiv 2108.11054), x'
optimized directly, the paper's terms with α = β = γ = 1, SGD with momentum. A new method is one subclass of
:class:`Method` registered in :data:`METHODS` (pytorch-grad-cam's ``BaseCAM`` habit): nothing else branches on
the method's name.

Each method answers for both scopes (``ExplainConfig.scope``, CONTRACT.md "Local explanations"): ``map`` (the
whole activation map) and ``focus`` (kernel k on its focus cells F, the mask confined to F's receptive field:
method/focus.py). The bound of a focus explanation (``oracle_gain``: free pixels, strong suppression) is the same
for every method: :meth:`Method.bound_objective`, :meth:`Method.bound_loop`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, NamedTuple

import torch

from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.method.focus import (
    AreaProfile,
    Binarize,
    BoxArea,
    FocusKeep,
    FocusSuppress,
    GridTV,
    OnFocus,
    top_regions,
)
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

__all__ = ["Method", "Loop", "MaskMethod", "PixelMethod", "METHODS", "Stage", "Later"]


class Later(NamedTuple):
    """A later stage of a focus explanation (pipeline/focus.py runs it from the previous stage's grids).

    ``build``: (x, b, **where) -> its parameterization; ``objective``, ``loop``: its loss and loop; ``after``: the
    :data:`Stage` after it, or None. ``tolerance`` None: every row takes this stage's result (unless it loses k,
    pipeline/focus.py's ``KEEP_FLOOR``); a share δ: an optional tidy-up that a row takes only where its
    specificity on F stays ≥ (1 − δ) of the row's result so far and k keeps as much (or ≥ ``KEEP_FLOOR``)."""

    build: Callable[..., Parameterization]
    objective: Objective
    loop: OptimizeConfig
    after: Stage | None = None
    tolerance: float | None = None


#: a later stage of a focus explanation from the previous one's grids ``[B, M, g, g]``
Stage = Callable[[torch.Tensor], "Later"]


@dataclass(frozen=True)
class Loop:
    """A method's own loop values for one scope, used where ExplainConfig leaves them None."""

    steps: int
    lr: float
    min_steps: int
    patience: int


class Method:
    """The template: override :meth:`parameterization`, :meth:`terms` and the loop's own values per scope."""

    #: the loop's own values per scope (``map``, ``focus``)
    loops: ClassVar[Mapping[str, Loop]]
    optimizer: ClassVar[Literal["adam", "sgd"]] = "adam"

    def parameterization(self, config: ExplainConfig) -> str:
        """The registered parameterization (``perturb.PARAMETERIZATIONS``) that builds x'."""
        raise NotImplementedError

    def param_options(self, config: ExplainConfig) -> dict[str, Any]:
        """Keyword options of the parameterization, from the config."""
        return {}

    def terms(self, config: ExplainConfig) -> list[tuple[float, Term]]:
        """The weighted loss terms (objectives.py; in focus scope, terms on the focus cells: method/focus.py)."""
        raise NotImplementedError

    def check(self, config: ExplainConfig) -> None:
        """Refuse settings this method cannot use (UsageError); called by ``ExplainConfig.validate``."""

    # -- shared ------------------------------------------------------------------------------------------------
    def resolve(self, config: ExplainConfig) -> ExplainConfig:
        """The config with this method's own loop values for its scope where it left them None (what results.json
        records)."""
        own = self.loops[config.scope]
        return replace(config, steps=own.steps if config.steps is None else config.steps,
                       lr=own.lr if config.lr is None else config.lr,
                       min_steps=own.min_steps if config.min_steps is None else config.min_steps,
                       patience=own.patience if config.patience is None else config.patience)

    def objective(self, config: ExplainConfig) -> Objective:
        """:meth:`terms`, plus the partner term when ``compare`` singles out a partner kernel (on F in focus
        scope)."""
        terms = self.terms(config)
        if config.contrast and config.partners:
            partner: Term = SuppressPartner() if config.scope == "map" else OnFocus(SuppressPartner())
            terms.append((config.contrast, partner))
        return Objective(terms)

    def loop(self, config: ExplainConfig) -> OptimizeConfig:
        c = self.resolve(config)
        assert c.steps is not None and c.lr is not None and c.min_steps is not None and c.patience is not None
        return OptimizeConfig(steps=c.steps, lr=c.lr, min_steps=c.min_steps, patience=c.patience, tol=c.tol,
                              optimizer=self.optimizer, early_stop=c.early_stop)

    def build(self, x: torch.Tensor, b: torch.Tensor, config: ExplainConfig, **where: Any) -> Parameterization:
        """The parameterization of x' for inputs ``x`` and references ``b`` ``[B, C, H, W]``; ``where``: what a
        focus parameterization needs besides the config (``boxes``, the windows; pipeline/focus.py)."""
        param: Parameterization = PARAMETERIZATIONS.get(self.parameterization(config))(
            x, b, **self.param_options(config), **where)
        return param

    def refine(self, config: ExplainConfig) -> Stage | None:
        """A second stage of a focus explanation, from the first one's grids (pipeline/focus.py's ``refine``:
        its build, objective, loop and the stage after it or None), or None (one stage)."""
        return None

    def fine_steps(self, config: ExplainConfig) -> int:
        """Steps of the second stage (:meth:`refine`), counted within ``steps``; 0 for one stage."""
        return 0

    def small_box(self, config: ExplainConfig) -> Later | None:
        """A second candidate for rows with a small rf_box (``focus_small_box``), run after the method's own and
        shown where pipeline/focus.py's ``small_takes`` says so; None: every row shows the method's own."""
        return None

    def component_names(self, config: ExplainConfig) -> tuple[str, ...]:
        """Captions of a component mask's masks (mask_components.png), empty for a single mask."""
        names: tuple[str, ...] = getattr(PARAMETERIZATIONS.get(self.parameterization(config)), "NAMES", ())
        return names

    # -- the bound of a focus explanation (the same for every method) ------------------------------------------
    @staticmethod
    def bound_objective(config: ExplainConfig) -> Objective:
        """Keep k on F (the same hinge as the explanation's), suppress the others on F strongly."""
        return Objective([(config.oracle_keep, FocusKeep(config.focus_keep_margin)),
                          (config.oracle_suppress, FocusSuppress())])

    @staticmethod
    def bound_loop(config: ExplainConfig) -> OptimizeConfig:
        """Adam on free pixels, ``oracle_steps`` at most, stopped when it converges (the focus loop's rule)."""
        own = MaskMethod.loops["focus"]
        return OptimizeConfig(steps=config.oracle_steps, lr=config.oracle_lr, min_steps=own.min_steps,
                              patience=own.patience, tol=config.tol, early_stop=True)


METHODS: Registry[Method] = Registry("method")


#: the small-box mask's initial logit: sigmoid 0.88, every pixel of the box kept (MaskMethod.small_box)
SMALL_INIT = 2.0
#: started from the soft masks' result (``focus_small_start`` ``soft``): their logits clipped to ±this, so a cell
#: can flip within a few steps (Adam moves a logit by about the learning rate, 0.1, per step)
SMALL_SPAN = 1.0


class MaskMethod(Method):
    """Masks over the photo: x' = b + Σ m_c ⊙ comp_c (perturb.py); the default. In focus scope one smooth mask
    confined to the rf_box (``focus_mask``, method/focus.py)."""

    loops = {"map": Loop(steps=200, lr=0.2, min_steps=20, patience=10),
             "focus": Loop(steps=160, lr=0.1, min_steps=30, patience=15)}

    def parameterization(self, config: ExplainConfig) -> str:
        return config.mask if config.scope == "map" else config.focus_mask

    def fine_steps(self, config: ExplainConfig) -> int:
        """Steps of coarse to fine's second stage: ``focus_fine_steps``, at most half of ``steps`` (``steps`` stays
        the most an explanation runs: the first stage gets the rest); 0 without a second stage."""
        if config.scope != "focus" or config.focus_regions <= 0:
            return 0
        return min(config.focus_fine_steps, super().loop(config).steps // 2)

    def loop(self, config: ExplainConfig) -> OptimizeConfig:
        """The first stage's loop: ``steps`` less the fine stage's."""
        loop = super().loop(config)
        return replace(loop, steps=loop.steps - self.fine_steps(config))

    def param_options(self, config: ExplainConfig) -> dict[str, Any]:
        if config.scope == "focus":
            return {"grid": config.focus_grid, "smooth": config.focus_smooth, "init": config.focus_init,
                    "bands": config.focus_bands}
        return {"resolution": config.resolution, "levels": config.levels, "fine_lr": config.fine_lr,
                "smooth": config.smooth, "init": config.init}

    def refine(self, config: ExplainConfig) -> Stage | None:
        """Coarse to fine (``focus_regions`` > 0): a finer grid over the same rf_box, 0 outside the coarse mask's
        largest regions and starting from it (``box_fine``): the fine stage carves detail and holes, where the
        extra suppression is, without adding islands (one fine stage alone fragments: docs/TRADEOFF.md), by default
        with one mask per Laplacian band (``focus_fine_bands``: texture kept where colour goes, or back). With
        ``focus_prune_steps``, its last steps are a stage on the fine mask's own largest regions that a row keeps
        only when it costs at most ``focus_prune_tolerance`` of the specificity (:class:`Later`'s ``tolerance``).
        With ``focus_sharpen_steps``, the last steps are a stage on the thresholded mask (``box_fine``'s ``hard``);
        ``focus_binarize`` adds a pull towards 0/1 to all of them."""
        if self.fine_steps(config) <= 0:  # one stage, or no step left for a second one (--steps 1)
            return None
        fine = replace(config, focus_tv=config.focus_fine_tv)
        fine_objective = self.objective(fine)
        if config.focus_binarize > 0:
            fine_objective = Objective([*fine_objective.terms, (config.focus_binarize, Binarize())])
        total = self.fine_steps(config)
        sharpen = min(config.focus_sharpen_steps, total - 1)  # the fine stage keeps at least one step
        prune = min(config.focus_prune_steps, total - sharpen - 1)

        def loop_of(steps: int) -> OptimizeConfig:
            return replace(self.loop(config), steps=steps, min_steps=min(self.loop(config).min_steps, steps))

        def builder(support: torch.Tensor, start: torch.Tensor, hard: str) -> Callable[..., Parameterization]:
            def build(x: torch.Tensor, b: torch.Tensor, **where: Any) -> Parameterization:
                param: Parameterization = PARAMETERIZATIONS.get("box_fine")(
                    x, b, support=support, start=start, grid=config.focus_fine_grid,
                    smooth=config.focus_fine_smooth, bands=config.focus_fine_bands, hard=hard,
                    feather=config.focus_sharpen_feather if hard else 0.0, **where)
                return param

            return build

        def sharpened_on(support: torch.Tensor | None) -> Stage | None:
            def sharpened(grid: torch.Tensor) -> Later:
                # the last steps build x' from the thresholded mask (box_fine's ``hard``), so the saved x', the
                # metrics and the contour are one and the same kept area (no faded content outside it); after a
                # prune, each row's grid is 0 outside the support it kept (pruned or not)
                where = support if support is not None else (grid.detach().mean(1, keepdim=True) > 0).to(grid.dtype)
                return Later(builder(where, grid, config.focus_sharpen), fine_objective, loop_of(sharpen))

            return sharpened if sharpen > 0 else None

        def pruned(grid: torch.Tensor) -> Later:
            # the fine grid splits the coarse regions into pieces: its own largest ones (and the faded mass a cell
            # around them) are re-optimized alone; a row keeps that only where it costs little specificity
            support = top_regions(grid, config.focus_regions, dilate=1)
            return Later(builder(support, grid, ""), fine_objective, loop_of(prune), sharpened_on(None),
                         tolerance=config.focus_prune_tolerance)

        def stage(grid: torch.Tensor) -> Later:
            support = top_regions(grid, config.focus_regions, dilate=1)
            after = pruned if prune > 0 else sharpened_on(support)
            return Later(builder(support, grid, ""), fine_objective, loop_of(total - sharpen - prune), after)

        return stage

    def small_box(self, config: ExplainConfig) -> Later | None:
        """The mask of rows whose rf_box holds at most ``focus_small_box``² pixels (None: off, or not focus
        scope): one binary mask on a ``focus_small_box``² grid over the box (at least a cell per pixel on average;
        the same grid for every row, so a row's result does not depend on its batch), cut at ½ in every step
        (``box``'s ``hard``: x' = x where kept, b elsewhere, the gradient passed straight through), starting fully
        kept, no smoothing, TV weight ``focus_small_tv``, area weight ``focus_small_area``, ``steps`` steps (a
        second candidate with the budget of the soft stages together). On a box of a few hundred pixels the soft
        masks keep faint content over most of it; a binary mask stays in a few regions there without TV
        (docs/TRADEOFF.md, "Binary masks on small boxes")."""
        if config.scope != "focus" or config.focus_small_box <= 0:
            return None
        small = replace(config, focus_area=config.focus_small_area, focus_tv=config.focus_small_tv,
                        focus_area_kind="mean", focus_area_target=0.0)

        def build(x: torch.Tensor, b: torch.Tensor, **where: Any) -> Parameterization:
            param: Parameterization = PARAMETERIZATIONS.get("box")(
                x, b, grid=config.focus_small_box, smooth=0.0, init=SMALL_INIT, bands=1, hard="binary",
                span=SMALL_SPAN, cut_grid=config.focus_small_cut, **where)
            return param

        return Later(build, self.objective(small), super().loop(config))  # all ``steps``: one stage

    def terms(self, config: ExplainConfig) -> list[tuple[float, Term]]:
        if config.scope == "focus":
            area: Term = (AreaProfile(config.focus_area_target) if config.focus_area_kind == "profile"
                          else BoxArea(config.focus_area_target))
            return [(config.focus_keep, FocusKeep(config.focus_keep_margin)), (config.focus_suppress, FocusSuppress()),
                    (config.focus_area, area), (config.focus_tv, GridTV())]
        return [(config.preserve, Preserve(config.preserve_margin)), (config.suppress, Suppress()),
                (config.area, MaskArea(config.area_target)), (config.tv, MaskTV())]


class PixelMethod(Method):
    """The paper's setup: x' itself, the paper's terms with α = β = γ = 1, SGD (lr 0.1, momentum 0.9). In focus
    scope the preserve and suppress terms are measured on the focus cells, and only a window around their
    receptive field is optimized (the rest of x' is the photo)."""

    loops = {"map": Loop(steps=200, lr=0.1, min_steps=40, patience=20),
             "focus": Loop(steps=200, lr=0.1, min_steps=40, patience=20)}
    optimizer = "sgd"

    def parameterization(self, config: ExplainConfig) -> str:
        return "pixel"

    def terms(self, config: ExplainConfig) -> list[tuple[float, Term]]:
        if config.scope == "focus":
            return [(1.0, OnFocus(PaperPreserve())), (1.0, OnFocus(PaperSuppress())), (1.0, ImageL1())]
        return [(1.0, PaperPreserve()), (1.0, PaperSuppress()), (1.0, ImageL1())]


METHODS.register("mask")(MaskMethod())
METHODS.register("pixel")(PixelMethod())
