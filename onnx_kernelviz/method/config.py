"""The settings of an explanation, and the one place their defaults live (docs/METHOD.md, docs/TRADEOFF.md).

:class:`ExplainConfig` holds every setting with its default; a method's own loop defaults per scope (``steps``,
``lr``, ``min_steps``, ``patience`` when left None) are declared once, on the method in
:data:`onnx_kernelviz.method.methods.METHODS`.
Everything else (the mask parameterizations, the optimizer loop) takes its values from here, never from defaults of
its own. :func:`parse_setting` turns ``--set KEY=VALUE`` text into a typed value by the field's annotation.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, fields
from typing import Any, Union, get_args, get_origin, get_type_hints

from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.options import SCOPES

__all__ = ["ExplainConfig", "parse_setting", "SETTING_NAMES", "AREA_KINDS"]


@dataclass(frozen=True)
class ExplainConfig:
    """Settings of one ``explain`` run (recorded in results.json ``settings``, the method's defaults filled in).

    Mask-method loss = ``preserve``·max(0, e_k − ``preserve_margin``) + ``suppress``·others_kept
    + ``area``·max(0, mean(m) − ``area_target``) + ``tv``·TV(m); the mask is a coarse-to-fine pyramid of
    ``levels`` logit grids up to ``resolution`` (the coarsest starting at logit ``init``, each finer one learning
    at ``fine_lr`` times the rate of the one above), smoothed by a Gaussian of ``smooth``·side; it is built, and
    its area and TV computed, at that finest grid, then upsampled once to the input size for the blend. Defaults
    chosen by measurement (docs/TRADEOFF.md, scripts/tune_defaults.py). ``mask`` names the mask parameterization
    of the mask method: ``region`` (one region mask) or a component mask (``bands``, ``bands4``, ``lumchroma``,
    ``bands_lc``: one region mask per Laplacian band or luminance/colour component, same loss).
    The pixel method uses the paper's α = β = γ = 1 and SGD. ``steps``, ``lr``, ``min_steps`` and ``patience`` left
    None take the method's own values for the scope (``METHODS``); ``tol``: early stopping's relative improvement
    (optimize.py).

    ``scope`` (CONTRACT.md, "Local explanations"): ``focus`` explains k at its peak (or at the cell ``at``, row and
    col of the activation map) with the ``focus_*`` settings below; ``map`` is the whole-map objective above.
    Focus loss = ``focus_keep``·max(0, 1 − ``focus_keep_margin`` − kept_F) + ``focus_suppress``·others_kept_F
    + ``focus_area``·A(m) + ``focus_tv``·TV(grid), A = the mask's mean over the rf_box (``focus_area_kind``
    ``mean``, only above ``focus_area_target`` when > 0) or TorchRay's sorted-area profile at ``focus_area_target``
    (``profile``); the mask (``focus_mask``, registered in ``perturb.PARAMETERIZATIONS``; ``box``: a
    ``focus_grid``² logit grid over the rf_box, Gaussian-smoothed by ``focus_smooth`` cells, starting at logit
    ``focus_init``, one per Laplacian band when ``focus_bands`` > 1). With ``focus_regions`` > 0 (coarse to fine)
    the mask is then refined for ``focus_fine_steps`` of the ``steps`` (at most half) on a ``focus_fine_grid``²
    grid (smoothed by ``focus_fine_smooth`` cells, TV weight ``focus_fine_tv``; one mask per Laplacian band when
    ``focus_fine_bands`` > 1, each starting from the first mask) that is 0 outside the first mask's
    ``focus_regions`` largest regions (grown by one cell), its loss plus ``focus_binarize``·mean 4m(1 − m). With
    ``focus_prune_steps``, the fine stage's last steps re-optimize on the fine mask's own ``focus_regions`` largest
    regions (the islands it split off dropped), and a row keeps that pruned mask only when its specificity on F
    stays within ``focus_prune_tolerance`` (a share) of the unpruned one's and k keeps as much (or ≥ 0.9). The
    fine stage's last ``focus_sharpen_steps`` build x' from its mask cut at ½ (x' = b outside the kept area, exactly
    what the contour outlines; inside it x for ``focus_sharpen`` ``binary``, the mask's values above ½ for ``cut``;
    its edge blurred by ``focus_sharpen_feather`` pixels).
    Small boxes: a row whose rf_box holds at most ``focus_small_box``² pixels (0: none) also runs one binary mask
    on a ``focus_small_box``² grid over the box (x' = x where kept, b elsewhere, in every step; no smoothing, TV
    weight ``focus_small_tv``, starting fully kept (``focus_small_start`` ``soft``: from the stages' result, its
    logits clipped to ±1), ``steps`` steps of its own after the stages above; the area and TV terms and the best
    step read the soft grid, or with ``focus_small_cut`` the grid cut at ½ as x' is) with area
    weight ``focus_small_area``, and shows it where k keeps as much (or ≥ 0.9) and the specificity on F gains at
    least ``focus_small_share`` as much as with the stages above, and x' shows less of the box than theirs in as
    few regions (pipeline/focus.py ``small_takes``). Before that, with ``focus_small_soft_area`` (None: off), such
    a row also runs the soft stages with that area weight, and the binary mask competes with that result where it
    costs at most ``focus_small_soft_tolerance`` (a share) of the specificity, k keeps as much (or ≥ 0.9) and x'
    shows less of the box, no more of it faintly, in as few regions (``smaller_takes``), else with the default
    weight's (docs/TRADEOFF.md, "Small boxes: a heavier area weight where it costs little").
    ``focus_crop``: run the network on a window around the rf_box when that computes F exactly. The bound
    (``oracle``): free pixels, ``oracle_steps`` Adam steps at ``oracle_lr``, loss ``oracle_keep``·(the keep hinge)
    + ``oracle_suppress``·others_kept_F.
    """

    method: str = "mask"
    scope: str = "focus"
    at: tuple[int, int] | None = None
    mask: str = "bands"
    steps: int | None = None
    early_stop: bool = True
    batch_size: int | None = None
    seed: int = 0
    reference: str = "mean"
    resolution: int = 56
    levels: int = 3
    fine_lr: float = 1.0
    smooth: float = 0.015
    init: float = 1.0
    preserve: float = 5.0
    preserve_margin: float = 0.12
    suppress: float = 6.0
    area: float = 0.3
    area_target: float = 0.0
    tv: float = 0.5
    lr: float | None = None
    min_steps: int | None = None
    patience: int | None = None
    tol: float = 2e-3
    baselines: tuple[str, ...] = ()
    #: (kernel, partner) pairs: the partner is singled out for suppression, weighted ``contrast``
    #: (``compare`` explains a against b and b against a; SuppressPartner in objectives.py)
    partners: tuple[tuple[int, int], ...] = ()
    contrast: float = 0.0
    top_images: int | None = None
    #: parity tolerance in the unit of the model's rule (measure/tolerance.py: relative for fp32/fp16, quantization
    #: steps for int8); None: the rule's default for the model's precision
    tolerance: float | None = None
    # -- focus scope (method/focus.py; measured in docs/TRADEOFF.md and docs/EVALUATION.md) ----------------------
    focus_mask: str = "box"
    focus_grid: int = 24
    focus_smooth: float = 0.5
    focus_init: float = 0.0
    focus_bands: int = 1
    focus_keep: float = 20.0
    focus_keep_margin: float = 0.05
    focus_suppress: float = 15.0
    focus_area: float = 1.0
    focus_area_kind: str = "mean"
    focus_area_target: float = 0.0
    focus_tv: float = 0.1
    focus_regions: int = 3
    focus_fine_grid: int = 96
    focus_fine_smooth: float = 0.5
    focus_fine_tv: float = 0.2
    focus_fine_steps: int = 80
    focus_fine_bands: int = 3
    focus_prune_steps: int = 0
    focus_prune_tolerance: float = 0.1
    focus_sharpen_steps: int = 0
    focus_sharpen: str = "binary"
    focus_sharpen_feather: float = 0.0
    focus_binarize: float = 0.0
    focus_small_box: int = 48
    focus_small_area: float = 8.0
    focus_small_tv: float = 0.0
    focus_small_share: float = 0.5
    focus_small_start: str = "kept"
    focus_small_cut: bool = False
    focus_small_soft_area: float | None = 4.0
    focus_small_soft_tolerance: float = 0.1
    focus_crop: bool = True
    oracle: bool = True
    oracle_steps: int = 80
    oracle_lr: float = 0.1
    oracle_keep: float = 20.0
    oracle_suppress: float = 10.0

    def validate(self) -> ExplainConfig:
        """Check every value (ranges, finite numbers, registered names); return self.

        Raises:
            UsageError: naming the option (``--steps``, or ``--set KEY=VALUE`` for the rest) and the valid range.
        """
        from onnx_kernelviz.baselines import resolve_names
        from onnx_kernelviz.method.methods import METHODS
        from onnx_kernelviz.method.perturb import PARAMETERIZATIONS
        from onnx_kernelviz.method.references import REFERENCES

        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"{_option(f.name, value)}: must be a finite number")
        at_least = {"steps": 1, "batch_size": 1, "resolution": 1, "levels": 1, "min_steps": 0, "patience": 1,
                    "top_images": 1, "fine_lr": 0, "smooth": 0, "preserve": 0, "preserve_margin": 0,
                    "suppress": 0, "area": 0, "area_target": 0, "tv": 0, "tol": 0, "contrast": 0, "tolerance": 0,
                    "focus_grid": 1, "focus_smooth": 0, "focus_bands": 1, "focus_keep": 0, "focus_keep_margin": 0,
                    "focus_suppress": 0, "focus_area": 0, "focus_area_target": 0, "focus_tv": 0,
                    "focus_regions": 0, "focus_fine_grid": 1, "focus_fine_smooth": 0, "focus_fine_tv": 0,
                    "focus_fine_steps": 1, "focus_fine_bands": 1, "focus_prune_steps": 0, "focus_prune_tolerance": 0,
                    "focus_sharpen_steps": 0, "focus_binarize": 0,
                    "focus_sharpen_feather": 0, "focus_small_box": 0, "focus_small_area": 0,
                    "focus_small_tv": 0, "focus_small_share": 0, "focus_small_soft_area": 0,
                    "focus_small_soft_tolerance": 0,
                    "oracle_steps": 1,
                    "oracle_keep": 0, "oracle_suppress": 0}
        for name, low in at_least.items():
            value = getattr(self, name)
            if value is not None and value < low:
                raise UsageError(f"{_OPTIONS.get(name, f'--set {name}')} must be at least {low} (got {value})")
        if self.focus_small_share > 1:
            raise UsageError(f"--set focus_small_share must be at most 1 (a share of the soft masks' gain; got "
                             f"{self.focus_small_share})")
        if self.focus_small_soft_tolerance > 1:
            raise UsageError(f"--set focus_small_soft_tolerance must be at most 1 (a share of the specificity; got "
                             f"{self.focus_small_soft_tolerance})")
        if self.focus_prune_tolerance > 1:
            raise UsageError(f"--set focus_prune_tolerance must be at most 1 (a share of the specificity; got "
                             f"{self.focus_prune_tolerance})")
        for name in ("lr", "oracle_lr"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"--set {name} must be above 0 (got {value})")
        if not -(2 ** 63) <= self.seed < 2 ** 64:  # what torch's generators take
            raise UsageError(f"--seed must be between -2**63 and 2**64 - 1 (got {self.seed})")
        method = METHODS.get(self.method)
        if self.method == "mask" and (self.mask not in PARAMETERIZATIONS or self.mask == "pixel"):
            masks = [n for n in PARAMETERIZATIONS.names() if n != "pixel"]
            raise UsageError(f"--set mask={self.mask}: unknown mask parameterization; use one of: {', '.join(masks)}")
        if self.scope not in SCOPES:
            raise UsageError(f"--scope {self.scope}: use one of: {', '.join(SCOPES)}")
        if self.at is not None:
            if self.scope != "focus":
                raise UsageError(f"--at {_cell(self.at)} picks the cell a focus explanation looks at; it needs "
                                 "--scope focus (the default)")
            if len(self.at) != 2 or min(self.at) < 0:
                raise UsageError(f"--at {_cell(self.at)}: give ROW,COL, two whole numbers from 0 (a cell of the "
                                 "layer's activation map)")
        if self.focus_mask not in PARAMETERIZATIONS:
            raise UsageError(f"--set focus_mask={self.focus_mask}: unknown mask parameterization; use one of: "
                             f"{', '.join(PARAMETERIZATIONS.names())}")
        if self.focus_sharpen not in SHARPEN_KINDS:
            raise UsageError(f"--set focus_sharpen={self.focus_sharpen}: use one of: {', '.join(SHARPEN_KINDS)}")
        if self.focus_small_start not in SMALL_STARTS:
            raise UsageError(f"--set focus_small_start={self.focus_small_start}: use one of: "
                             f"{', '.join(SMALL_STARTS)}")
        if self.focus_area_kind not in AREA_KINDS:
            raise UsageError(f"--set focus_area_kind={self.focus_area_kind}: use one of: {', '.join(AREA_KINDS)}")
        REFERENCES.get(self.reference)
        resolve_names(self.baselines)
        method.check(self)
        return self


#: what the sharpen stage keeps inside the contour: x itself, or the mask's values above ½ (method/focus.py)
SHARPEN_KINDS = ("binary", "cut")
#: where the small-box mask starts: every pixel of the box kept, or the soft masks' result (logits clipped to ±1)
SMALL_STARTS = ("kept", "soft")
#: how ``focus_area`` measures a mask: its mean over the rf_box, or TorchRay's sorted profile (method/focus.py)
AREA_KINDS = ("mean", "profile")


def _cell(at: tuple[int, ...]) -> str:
    return ",".join(str(v) for v in at)


#: the CLI option that sets a field, where there is one (the others are ``--set KEY=VALUE``)
_OPTIONS = {"method": "--method", "scope": "--scope", "at": "--at", "steps": "--steps", "early_stop": "--early-stop",
            "batch_size": "--batch-size", "seed": "--seed", "reference": "--reference", "baselines": "--baselines",
            "tolerance": "--tolerance", "top_images": "--top-images", "contrast": "--contrast"}

SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(ExplainConfig))
_TYPES = get_type_hints(ExplainConfig)


def _option(name: str, value: Any) -> str:
    return f"{_OPTIONS[name]} {value}" if name in _OPTIONS else f"--set {name}={value}"


def parse_setting(key: str, text: str) -> Any:
    """``--set KEY=VALUE``: ``text`` as the type of ExplainConfig's field ``key`` (``int``, ``float``, ``bool``
    words, ``str``, a comma list for tuples such as ``baselines=gradient,guided``, ``a:b`` pairs for
    ``partners``; ``none`` for optional fields).

    Raises:
        UsageError: unknown key, or a value that is not of the field's type.
    """
    if key not in _TYPES:
        raise UsageError(f"--set {key}={text}: unknown setting; use one of: {', '.join(sorted(SETTING_NAMES))}")
    kind = _TYPES[key]
    args = get_args(kind)
    optional = get_origin(kind) in (Union, types.UnionType) and type(None) in args
    if optional:
        if text.strip().lower() in ("none", "null", ""):
            return None
        kind = next(a for a in args if a is not type(None))
    try:
        return _parse(kind, text.strip())
    except ValueError:
        name = _FORMATS.get(key) or f"not a valid {getattr(kind, '__name__', str(kind))}"
        raise UsageError(f"--set {key}={text}: {name}") from None


#: what a ``--set`` value of a tuple field looks like (the type's name alone, "tuple", says nothing)
_FORMATS = {"partners": "give KERNEL:PARTNER pairs, e.g. partners=3:7 or 3:7,7:3 (each kernel against its partner; "
                        "with --set contrast=W)",
            "at": "give ROW,COL, two whole numbers from 0 (a cell of the layer's activation map, e.g. at=6,8)"}


def _parse(kind: Any, text: str) -> Any:
    if kind is bool:
        words = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False,
                 "off": False}
        if text.lower() not in words:
            raise ValueError
        return words[text.lower()]
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    if kind is str:
        if not text:
            raise ValueError
        return text
    if get_origin(kind) is tuple:
        inner = get_args(kind)[0]
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if get_origin(inner) is not tuple:
            return tuple(_parse(inner, p) for p in parts)
        pairs = []  # partners: a:b,c:d
        for p in parts:
            a, sep, b = p.partition(":")
            if not sep:
                raise ValueError
            pairs.append((int(a), int(b)))
        return tuple(pairs)
    raise ValueError
