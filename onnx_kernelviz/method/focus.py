"""Local explanations (``--scope focus``, METHOD.md "Local explanations and the bound"): kernel k at its peak.

* :func:`focus_cells`: the focus cells F, the 8-connected component of {r_k ≥ ½·r_k(peak)} holding the peak.
* Loss terms restricted to F (``Step.focus``, ``[B, h, w]`` in {0, 1}): keep r_k there, suppress the other
  kernels there.
* :class:`BoxMask`: a smooth mask confined to F's receptive field (rf_box): a small logit grid spanning the box,
  sigmoid, Gaussian-smoothed, placed over the box; x' = reference outside the box. Its area is counted on that
  grid, i.e. as a fraction of the box.
* :class:`AreaProfile`: TorchRay's area constraint (Fong et al., ICCV 2019): the sorted mask values are pulled
  towards a step profile with the target fraction of ones, which makes the mask nearly binary at that area.
* :class:`SupportBoxMask` (``box_fine``): coarse to fine, a finer grid that is 0 outside a first mask's largest
  regions (:func:`top_regions`) and starts from it (``focus_regions`` > 0).
* :class:`FreePixels`: the bound's parameterization: x' anywhere in the valid pixel range (``oracle_gain``).
* :func:`shown_mask`: the mask a focus explanation reports: what x' shows of the photo, not its masks' mean.

(Over 300 lines: the focus terms and both box masks share their placement helpers; split them when a third mask
comes.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.method.objectives import EPS, Step
from onnx_kernelviz.method.perturb import PARAMETERIZATIONS, BandMask, Perturbed, smooth_mask

_DEFAULTS = ExplainConfig()  # the box mask's defaults are ExplainConfig's focus_* settings (one home)


@dataclass(frozen=True)
class FocusCells:
    """``peak`` (row, col) on the activation map, ``cells`` ``[h, w]`` bool (F), and F's bounding box
    ``(top, left, bottom, right)`` on the map (bottom/right exclusive)."""

    peak: tuple[int, int]
    cells: np.ndarray

    @property
    def count(self) -> int:
        return int(self.cells.sum())

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        rows, cols = np.nonzero(self.cells)
        return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def focus_cells(r_k: np.ndarray, at: tuple[int, int] | None = None) -> FocusCells:
    """F for one kernel's rectified map ``r_k`` ``[h, w]``: the 8-connected component of
    {r_k ≥ ½·r_k(peak)} containing the peak (the argmax, or ``at``). When r_k(peak) = 0 (``at`` on a cell
    where k does not fire) F is that one cell."""
    r = np.maximum(np.asarray(r_k, dtype=np.float64), 0.0)
    if at is None:
        row, col = np.unravel_index(int(np.argmax(r)), r.shape)
        at = (int(row), int(col))
    peak = (int(at[0]), int(at[1]))
    top = r[peak]
    if top <= 0:
        cells = np.zeros(r.shape, bool)
        cells[peak] = True
        return FocusCells(peak, cells)
    above = (r >= 0.5 * top).astype(np.uint8)
    _, labels = cv2.connectedComponents(above, connectivity=8)
    return FocusCells(peak, labels == labels[peak])


def pair_cells(r_a: np.ndarray, r_b: np.ndarray, at: tuple[int, int] | None = None) -> FocusCells | None:
    """The focus of a pair (``compare`` in focus scope): F of the map both kernels fire on,
    s = min(r_a / max r_a, r_b / max r_b) ``[h, w]`` (high only where both fire strongly), by the same rule as
    :func:`focus_cells` (its peak, or ``at``). None when the two never fire on the same cell."""
    a, b = (np.maximum(np.asarray(r, np.float64), 0.0) for r in (r_a, r_b))
    if a.max() <= 0 or b.max() <= 0:
        return None
    shared = np.minimum(a / a.max(), b / b.max())
    if shared.max() <= 0:
        return None
    return focus_cells(shared, at)


def focus_norms(t: torch.Tensor, k: torch.Tensor, focus: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(‖t_k on F‖², Σ_{j≠k} ‖t_j on F‖²) per row, ``[B]`` each, of activations ``t`` ``[B, C, h, w]``, kernels
    ``k`` ``[B]`` and focus cells ``focus`` ``[B, h, w]``."""
    f = focus.unsqueeze(1)  # [B, 1, h, w]
    sq = ((t * f) ** 2).flatten(2).sum(2)  # [B, C]
    k_sq = sq[torch.arange(len(k), device=t.device), k]
    return k_sq, sq.sum(1) - k_sq


def kept_on_focus(act: torch.Tensor, ref: torch.Tensor, k: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
    """kept_F = ‖r_k(x') on F‖ / ‖r_k(x) on F‖ per row ``[B]``, from rectified activations on x' (``act``) and on
    x (``ref``), both ``[B, C, h, w]``: what :class:`FocusKeep` holds up (and pipeline/focus.py checks after a
    later stage)."""
    a, _ = focus_norms(act, k, focus)
    r, _ = focus_norms(ref, k, focus)
    return torch.sqrt(a + EPS) / (torch.sqrt(r) + EPS)


def _cells(s: Step) -> torch.Tensor:
    if s.focus is None:
        raise ValueError("focus terms (FocusKeep, FocusSuppress) need the focus cells (optimize(..., focus=...))")
    return s.focus


def _focus_norms(s: Step, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`focus_norms` of a step's rows."""
    return focus_norms(t, s.k, _cells(s))


@dataclass
class FocusKeep:
    """max(0, 1 − margin − kept_F), kept_F = ‖r_k(x') on F‖ / ‖r_k(x) on F‖: k keeps (1 − margin) of its
    activation at its peak; more is free (the specificity only gains from it)."""

    margin: float = 0.05

    def __call__(self, s: Step) -> torch.Tensor:
        return torch.relu(1.0 - self.margin - kept_on_focus(s.act, s.ref, s.k, _cells(s)))


@dataclass
class OnFocus:
    """Any whole-map term restricted to the focus cells: it sees the activations zeroed outside F (the paper's
    terms for ``--method pixel`` in focus scope, compare's partner term)."""

    term: Callable[[Step], torch.Tensor]

    def __call__(self, s: Step) -> torch.Tensor:
        if s.focus is None:
            raise ValueError("OnFocus needs the focus cells (optimize(..., focus=...))")
        f = s.focus.unsqueeze(1)  # [B, 1, h, w]
        return self.term(replace(s, act=s.act * f, ref=s.ref * f))


@dataclass
class FocusSuppress:
    """others_kept on F: ‖r_¬k(x') on F‖ / ‖r_¬k(x) on F‖."""

    def __call__(self, s: Step) -> torch.Tensor:
        _, a = _focus_norms(s, s.act)
        _, r = _focus_norms(s, s.ref)
        return torch.sqrt(a + EPS) / (torch.sqrt(r) + EPS)


def _grid(s: Step) -> torch.Tensor:
    return s.mask_and_grid()[1]


@dataclass
class BoxArea:
    """The mask's mean over its grid (for :class:`BoxMask`: the kept fraction of the rf_box); with ``target``,
    only the area above it counts."""

    target: float = 0.0

    def __call__(self, s: Step) -> torch.Tensor:
        a = _grid(s).flatten(1).mean(1)
        return torch.relu(a - self.target) if self.target > 0 else a


@dataclass
class AreaProfile:
    """TorchRay's area constraint: mean (sort(m) − p)², p the step profile with a ``target`` fraction of ones."""

    target: float = 0.15

    def __call__(self, s: Step) -> torch.Tensor:
        m = _grid(s).flatten(1)
        n = m.shape[1]
        ones = int(round(self.target * n))
        p = torch.zeros(n, device=m.device, dtype=m.dtype)
        if ones:
            p[n - ones:] = 1.0
        return ((m.sort(dim=1).values - p) ** 2).mean(1)


@dataclass
class Binarize:
    """Mean of 4·m(1 − m) over the grid: 0 for a mask of 0s and 1s, 1 for a mask of ½ (pushes a mask towards
    the kept area its contour outlines)."""

    def __call__(self, s: Step) -> torch.Tensor:
        g = _grid(s)
        return (4 * g * (1 - g)).flatten(1).mean(1)


@dataclass
class GridTV:
    """Mean absolute difference of neighbouring grid cells: regions, not speckle."""

    def __call__(self, s: Step) -> torch.Tensor:
        g = _grid(s)
        return (g[..., 1:, :] - g[..., :-1, :]).abs().flatten(1).mean(1) + \
            (g[..., :, 1:] - g[..., :, :-1]).abs().flatten(1).mean(1)


def box_placement(boxes: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """For boxes ``[B, 4]`` (top, left, bottom, right) in pixels of an image ``size`` (H, W): the affine grids
    ``[B, H, W, 2]`` that place a ``[B, M, g, g]`` grid over each box (``grid_sample``), and the box indicators
    ``[B, 1, H, W]``."""
    H, W = size
    b = boxes.to(torch.float32)
    t, left, bo, r = b.unbind(1)
    bw, bh = (r - left).clamp_min(1), (bo - t).clamp_min(1)
    theta = torch.zeros(len(b), 2, 3)
    theta[:, 0, 0] = W / bw
    theta[:, 0, 2] = (W - 2 * left) / bw - 1
    theta[:, 1, 1] = H / bh
    theta[:, 1, 2] = (H - 2 * t) / bh - 1
    grids = F.affine_grid(theta, [len(b), 1, H, W], align_corners=False)
    ys = torch.arange(H).view(1, H, 1)
    xs = torch.arange(W).view(1, 1, W)
    inside = (ys >= t.view(-1, 1, 1)) & (ys < bo.view(-1, 1, 1)) & (xs >= left.view(-1, 1, 1)) & (xs < r.view(-1, 1, 1))
    return grids, inside.unsqueeze(1).float()


@PARAMETERIZATIONS.register("box")
class BoxMask:
    """x' = b + m ⊙ (x − b), m = 0 outside each row's rf_box and, inside, smooth(sigmoid(logits)) of a
    ``grid``×``grid`` logit grid spanning the box, bilinearly placed over it.

    Args:
        x, b: inputs and references ``[B, C, H, W]``; boxes: rf_box per row ``[B, 4]`` (pixels).
        grid: cells of the logit grid along each side of the box (coarser = fewer, larger regions).
        smooth: sigma of the Gaussian on the grid, in grid cells (0 = none).
        init: initial logit (0: m = ½ everywhere in the box).
        start: instead, masks ``[B, M', s, s]`` over the same boxes to start from (their mean over M', resized;
            the small-box mask starts from the soft masks' result), their logits clipped to ±``span``.
        cut_grid: with ``hard`` ``binary``, the grid itself (what the area and TV terms and the best step read) cut at
            ½ as x' is (:func:`_cut_grid`); off, they read the soft grid.
        bands: 1 = one mask for x − b; 3 = one per Laplacian band (``BandMask``), ``Perturbed.mask`` their mean.
        crops: per row ``(top, left)`` of a window of ``crop_size`` (h, w) holding the box: x' is built (and the
            network run) on that window only; :meth:`render` gives the full-size x' and mask of a grid.
        hard: "" (a soft mask), or "binary"/"cut": the placed mask cut at ½ in every step (:meth:`_blend`).
    """

    #: the band masks' captions (mask_components.png): the bands are BandMask's (:meth:`_components`)
    NAMES: tuple[str, ...] = BandMask.NAMES

    def __init__(self, x: torch.Tensor, b: torch.Tensor, *, boxes: torch.Tensor, grid: int = _DEFAULTS.focus_grid,
                 smooth: float = _DEFAULTS.focus_smooth, init: float = _DEFAULTS.focus_init,
                 bands: int = _DEFAULTS.focus_bands, crops: list[tuple[int, int]] | None = None,
                 crop_size: tuple[int, int] | None = None, hard: str = "", start: torch.Tensor | None = None,
                 span: float = 1.0, cut_grid: bool = False, **_: object) -> None:
        self.x, self.b, self.boxes = x, b, boxes.cpu()
        self.bands, self.hard, self.cut_grid = int(bands), hard, bool(cut_grid)
        comps = self._components(x, b)
        grids, inside = box_placement(self.boxes, (x.shape[-2], x.shape[-1]))
        grids, inside = grids.to(x.device, x.dtype), inside.to(x.device, x.dtype)
        if crops is not None:
            assert crop_size is not None, "crops need crop_size"
            h, w = crop_size

            def cut(t: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
                if channels_last:  # [B, H, W, 2]
                    return torch.stack([t[i, y:y + h, x0:x0 + w] for i, (y, x0) in enumerate(crops)])
                return torch.stack([t[i, ..., y:y + h, x0:x0 + w] for i, (y, x0) in enumerate(crops)])

            b, comps, grids, inside = cut(b), cut(comps), cut(grids, True), cut(inside)
        self.cb, self.comps, self.place, self.inside = b, comps, grids, inside
        self.sigma = float(smooth)
        M = comps.shape[1]
        self.logits = torch.full((len(x), M, int(grid), int(grid)), float(init), device=x.device, dtype=x.dtype,
                                 requires_grad=True)
        if start is not None:  # from another mask's result: its logit, within ±span so that cells can still flip
            m0 = F.interpolate(start.detach().to(x.device, x.dtype).mean(1, keepdim=True), size=(int(grid),) * 2,
                               mode="bilinear", align_corners=False).clamp(1e-3, 1 - 1e-3)
            with torch.no_grad():
                self.logits.copy_(torch.log(m0 / (1 - m0)).clamp(-span, span).expand_as(self.logits))

    def _components(self, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """x − b split into the masked components ``[B, M, C, H, W]``."""
        if self.bands <= 1:
            return (x - b).unsqueeze(1)
        from onnx_kernelviz.method.references import gaussian_blur
        side = max(x.shape[-2:])
        with torch.no_grad():
            lows = [gaussian_blur(x, side / d) for d in BandMask.DIVISORS] + [x]
            return torch.stack([lows[0] - b] + [hi - lo for lo, hi in zip(lows, lows[1:])], 1)

    def configure(self, **_: object) -> None:
        """Options are given to the constructor (they depend on the boxes)."""

    def parameters(self) -> list[torch.Tensor]:
        return [self.logits]

    def _grid(self, logits: torch.Tensor) -> torch.Tensor:
        return smooth_mask(torch.sigmoid(logits), self.sigma)  # [b, M, g, g]

    #: the sharpen stage's cut of the placed mask at ½ (:meth:`_blend`): "" none, "binary" or "cut"
    hard: str = ""
    #: sigma in pixels of a Gaussian on the cut mask's edge (0 = none)
    feather: float = 0.0

    def _blend(self, g: torch.Tensor, place: torch.Tensor, inside: torch.Tensor, b: torch.Tensor,
               comps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x' ``[b, C, h, w]`` and the placed masks ``[b, M, h, w]`` of grids ``g`` ``[b, M, g, g]``. With ``hard``,
        the placed masks are cut to 0 where their mean is at most ½ (the kept area the report outlines), the gradient
        passed straight through (Bengio et al. 2013): x' is exactly b outside the contour, and inside it x ("binary")
        or b + m ⊙ (x − b) ("cut")."""
        m = F.grid_sample(g, place, mode="bilinear", padding_mode="border", align_corners=False) * inside
        if self.hard:
            # the contour the report draws is the mean mask's (Perturbed.mask): one cut for every band mask, so
            # no band shows content outside it
            kept = (m.mean(1, keepdim=True) > 0.5).to(m.dtype).expand_as(m)
            cut = kept if self.hard == "binary" else m * kept
            if self.feather > 0:  # a soft edge: a hard one is itself an edge the other kernels respond to
                cut = smooth_mask(cut, self.feather) * inside
            m = m + (cut - m).detach()
        return b + (m.unsqueeze(2) * comps).sum(1), m  # exactly b outside the box

    def __call__(self, rows: torch.Tensor | None = None) -> Perturbed:
        sel = (lambda t: t) if rows is None else (lambda t: t[rows])
        g = self._grid(sel(self.logits))
        g = _cut_grid(g) if self.cut_grid and self.hard == "binary" else g
        x_mod, m = self._blend(g, sel(self.place), sel(self.inside), sel(self.cb), sel(self.comps))
        return Perturbed(x_mod, m.mean(1, keepdim=True), g)

    def snapshot(self, rows: torch.Tensor) -> Perturbed:
        with torch.no_grad():
            return self(rows)

    def render(self, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The full-size x' ``[B, C, H, W]`` and mask ``[B, 1, H, W]`` of (smoothed) grids ``[B, M, g, g]``."""
        x = self.x
        with torch.no_grad():
            place, inside = box_placement(self.boxes, (x.shape[-2], x.shape[-1]))
            x_mod, m = self._blend(grid, place.to(x.device, x.dtype), inside.to(x.device, x.dtype), self.b,
                                   self._components(x, self.b))
        return x_mod, m.mean(1, keepdim=True)


def _cut_grid(g: torch.Tensor) -> torch.Tensor:
    """A binary mask's grid ``[B, M, g, g]`` cut at ½, the gradient passed straight through (``focus_small_cut``).

    Uncut, the area and TV terms and the optimizer's pick of its best step read the soft grid: they reward logits
    that drift towards ½ while x' (cut at ½) still shows the whole box. Cut, x' is built from the cut grid (placing
    a 0/1 grid and cutting again at ½ leaves it as it is), so :meth:`BoxMask.render` of the grid the optimizer
    keeps gives that x' exactly. Not the default: on the held-out photos it left EfficientNet-Lite0 layer 8's kept
    area at 0.31 of the box against 0.21 (docs/TRADEOFF.md, "The binary mask's loss reads the soft grid")."""
    return g + ((g > 0.5).to(g.dtype) - g).detach()


#: :func:`shown_mask`'s blur: sigma = the image's longer side / SHOWN_SCALE (2 px at 224), at most the rf_box's
#: shorter side / SHOWN_BOX; the floor of its denominator: SHOWN_FLOOR of its median inside the box
SHOWN_SCALE, SHOWN_BOX, SHOWN_FLOOR = 112.0, 8.0, 0.05


def shown_mask(x_mod: torch.Tensor, x: torch.Tensor, b: torch.Tensor,
               boxes: torch.Tensor | None = None) -> torch.Tensor:
    """What x' shows of x, per pixel ``[B, H, W]`` in [0, 1]: the local share of x's difference from the
    reference that x' keeps, G(Σ_c |x' − b|) / G(Σ_c |x − b|), both sums taken inside the row's rf_box only
    (``boxes`` ``[B, 4]``; None: the whole image), G a Gaussian of side / :data:`SHOWN_SCALE` pixels and at most
    the box's shorter side / :data:`SHOWN_BOX` (the denominator at least :data:`SHOWN_FLOOR` of its median in the
    box and 1/1000 of its largest value: where x is the reference there is nothing to show), clipped to [0, 1], and
    0 wherever x' is b. For one mask m (x' = b + m ⊙ (x − b)) this is m, locally averaged; for band masks it
    counts a place whose colour is kept but not its texture (or back) by how much of x is visible there, where the
    mean of the band masks would count a band with no content at that place as a dropped one. This is the mask a
    focus explanation reports (mask.npy, its contour, its area; docs/TRADEOFF.md "What x′ shows").
    ``x_mod``, ``x``, ``b`` ``[B, C, H, W]``."""
    from onnx_kernelviz.method.references import gaussian_blur

    H, W = x.shape[-2:]
    if boxes is None:
        boxes = torch.tensor([[0, 0, H, W]] * len(x))
    out = torch.zeros_like(x[:, 0])
    with torch.no_grad():
        for i, (t, left, bottom, right) in enumerate(boxes.tolist()):
            xm, xi, bi = x_mod[i:i + 1], x[i:i + 1], b[i:i + 1]  # [1, C, H, W]
            box = torch.zeros_like(xi[:, :1])  # the rf_box's indicator [1, 1, H, W]
            box[..., max(t, 0):bottom, max(left, 0):right] = 1
            sigma = min(max(H, W) / SHOWN_SCALE, max(min(bottom - t, right - left), 1) / SHOWN_BOX)
            shown = gaussian_blur((xm - bi).abs().sum(1, keepdim=True) * box, sigma)
            there = gaussian_blur((xi - bi).abs().sum(1, keepdim=True) * box, sigma)
            within = there[box > 0]
            floor = max(SHOWN_FLOOR * float(within.median()) if within.numel() else 0.0, 1e-3 * float(there.max()),
                        1e-12)
            share = (shown / there.clamp_min(floor)).clamp(0, 1)
            out[i] = (share * (xm != bi).any(1, keepdim=True) * box)[0, 0]
    return out


def top_regions(grid: torch.Tensor, keep: int = 3, threshold: float = 0.5, dilate: int = 1) -> torch.Tensor:
    """The support of a mask's ``keep`` largest regions: for masks ``[B, M, g, g]`` (their mean over M), the
    8-connected regions of {m > threshold} (or, when none is, of {m ≥ ½·max m}), the ``keep`` largest by area,
    dilated by ``dilate`` cells; ``[B, 1, g, g]`` in {0, 1}."""
    out = []
    kernel = np.ones((2 * dilate + 1, 2 * dilate + 1), np.uint8)
    for m in grid.detach().mean(1).cpu().numpy():
        above = m > threshold if (m > threshold).any() else m >= 0.5 * m.max()
        n, labels, stats, _ = cv2.connectedComponentsWithStats(above.astype(np.uint8), connectivity=8)
        biggest = 1 + np.argsort(-stats[1:, cv2.CC_STAT_AREA])[:keep]
        s = np.isin(labels, biggest).astype(np.uint8)
        out.append(cv2.dilate(s, kernel) if dilate > 0 else s)
    return torch.from_numpy(np.stack(out)).unsqueeze(1).to(grid.device, grid.dtype)


@PARAMETERIZATIONS.register("box_fine")
class SupportBoxMask(BoxMask):
    """The second stage of a coarse-to-fine box mask: a finer logit grid over the same rf_box whose mask is 0
    outside a fixed ``support`` (a coarse mask's largest regions, :func:`top_regions`): fine structure and holes
    inside the support, no new islands outside it.

    Args:
        support: ``[B, 1, s, s]`` in {0, 1} on the coarse grid (bilinearly resized to ``grid``).
        start: the coarse masks ``[B, M, s, s]`` the fine logits start from (their logit, resized).
        (the rest as :class:`BoxMask`)
    """

    def __init__(self, x: torch.Tensor, b: torch.Tensor, *, boxes: torch.Tensor, support: torch.Tensor,
                 start: torch.Tensor, grid: int = 48, hard: str = "", feather: float = 0.0,
                 **options: Any) -> None:
        super().__init__(x, b, boxes=boxes, grid=grid, **options)
        self.hard, self.feather = hard, float(feather)  # the sharpen stage (MaskMethod.refine): the mask cut at ½
        g = int(grid)
        self.support = F.interpolate(support.to(x.device, x.dtype), size=(g, g), mode="bilinear",
                                     align_corners=False)
        start = start.detach().to(x.device, x.dtype)
        if start.shape[1] != self.logits.shape[1]:  # a stage with another number of band masks starts from the mean
            start = start.mean(1, keepdim=True)
        m0 = F.interpolate(start, size=(g, g), mode="bilinear", align_corners=False)
        m0 = m0.expand(-1, self.logits.shape[1], -1, -1).clamp(0.02, 0.98)
        with torch.no_grad():
            self.logits.copy_(torch.log(m0 / (1 - m0)))

    def __call__(self, rows: torch.Tensor | None = None) -> Perturbed:
        sel = (lambda t: t) if rows is None else (lambda t: t[rows])
        g = smooth_mask(torch.sigmoid(sel(self.logits)), self.sigma) * sel(self.support)
        x_mod, m = self._blend(g, sel(self.place), sel(self.inside), sel(self.cb), sel(self.comps))
        return Perturbed(x_mod, m.mean(1, keepdim=True), g)


@PARAMETERIZATIONS.register("free")
class FreePixels:
    """x' = lo + (hi − lo)·sigmoid(z), z initialised at x: any image in the valid range (the bound's search)."""

    def __init__(self, x: torch.Tensor, b: torch.Tensor | None = None, *, lo: torch.Tensor, hi: torch.Tensor,
                 **_: object) -> None:
        self.lo, self.span = lo.view(1, -1, 1, 1), (hi - lo).view(1, -1, 1, 1)
        u = ((x - self.lo) / self.span).clamp(1e-3, 1 - 1e-3)
        self.z = torch.log(u / (1 - u)).detach().clone().requires_grad_(True)

    def configure(self, **_: object) -> None:
        """No options."""

    def parameters(self) -> list[torch.Tensor]:
        return [self.z]

    def __call__(self, rows: torch.Tensor | None = None) -> Perturbed:
        z = self.z if rows is None else self.z[rows]
        return Perturbed(self.lo + self.span * torch.sigmoid(z), None)

    def snapshot(self, rows: torch.Tensor) -> Perturbed:
        with torch.no_grad():
            return self(rows)
