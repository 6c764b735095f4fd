"""The local explanation's steps (``--scope focus``, CONTRACT.md "Local explanations"), which pipeline/batch.py
chains for ``explain`` and ``compare`` and the atlas calls at its exemplar sites:

    locate   -> the peak (or a given cell), the focus cells F and their rf_box, per (image, kernel): a Site
    optimize -> a batch optimized on F (the method's focus parameterization and objective, or the bound's free
                pixels), on a window around each rf_box when that computes F exactly (much cheaper early on)
    measure  -> the contract's numbers on F, from onnxruntime on the original model
    baselines-> each baseline's saliency of k on F, kept inside the rf_box at our area
    block    -> the contract's ``focus`` block, plus ``separable`` and ``companions``

Each step takes and returns arrays or tensors, so a caller can batch any (image, kernel) pairs it likes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from onnx_kernelviz.frontend.receptive import receptive_field, tensor_shapes
from onnx_kernelviz.measure.focus import FocusNumbers, Readability, focus_metrics
from onnx_kernelviz.method.focus import FocusCells, box_placement, focus_cells, focus_norms, kept_on_focus
from onnx_kernelviz.method.methods import Stage
from onnx_kernelviz.method.objectives import EPS, Objective
from onnx_kernelviz.method.optimize import OptimizeConfig, OptimizeResult, StepCallback, optimize
from onnx_kernelviz.method.perturb import Parameterization
from onnx_kernelviz.model import Model
from onnx_kernelviz.results import FocusMetrics

__all__ = ["Site", "site_of", "locate", "plan_crops", "optimize_on_focus", "measure", "baselines_on_focus",
           "companions", "focus_block", "scores_on_sites", "small_takes", "smaller_takes", "SEPARABLE_GAIN",
           "KEEP_FLOOR", "Crops", "BuildFn"]


@dataclass(frozen=True)
class Site:
    """Where one explanation looks: F on the activation map and its rf_box ``(top, left, bottom, right)``."""

    focus: FocusCells
    rf_box: tuple[int, int, int, int]


@lru_cache(maxsize=16)
def _shapes(model: Model, size: tuple[int, int]) -> dict:
    info = model.loaded.input
    shape = (1, model.channels, *size) if info.layout == "nchw" else (1, *size, model.channels)
    return tensor_shapes(model.loaded.proto, info.name, shape)


def site_of(model: Model, tensor: str, cells: FocusCells, size: tuple[int, int]) -> Site:
    """The Site of focus cells ``cells`` on ``tensor``'s map, for an input of ``size`` (H, W): their rf_box from
    the graph (frontend/receptive.py)."""
    hw = (int(size[0]), int(size[1]))
    rf = receptive_field(model.graph, _shapes(model, hw), tensor, cells.bbox, model.loaded.input.name,
                         model.loaded.input.layout, hw)
    return Site(cells, rf.box)


def locate(model: Model, tensor: str, t: np.ndarray, k: int, size: tuple[int, int],
           at: tuple[int, int] | None = None) -> Site:
    """F for kernel ``k`` on activations ``t`` ``[C, h, w]`` (onnxruntime, original input), at its peak or at the
    cell ``at``, and its rf_box for an input of ``size`` (H, W)."""
    return site_of(model, tensor, focus_cells(t[k], at), size)


#: per row the top-left corner of a window, and the windows' size (h, w) (:func:`plan_crops`)
Crops = tuple[list[tuple[int, int]], tuple[int, int]]
#: builds a parameterization: (x, b, **where) -> Parameterization; ``where`` holds ``boxes`` and the windows
BuildFn = Callable[..., Parameterization]


def plan_crops(boxes: list[tuple[int, int, int, int]], size: tuple[int, int], grid: tuple[int, int],
               most: float = 0.8) -> Crops | None:
    """One window size (h, w) and a top-left corner per row such that each window holds its rf_box and starts on
    the activation grid (a multiple of the stride), so the network computes F's cells on the window exactly as
    on the whole image. None when the stride is not whole or a window would be most of the image anyway."""
    (H, W), (h, w) = size, grid
    if H % h or W % w:
        return None
    sy, sx = H // h, W // w
    need_h = max(b - (t // sy) * sy for t, _, b, _ in boxes)
    need_w = max(r - (left // sx) * sx for _, left, _, r in boxes)
    ch, cw = min(-(-need_h // sy) * sy, H), min(-(-need_w // sx) * sx, W)
    if ch * cw > most * H * W:
        return None
    corners = [(min((t // sy) * sy, H - ch), min((left // sx) * sx, W - cw)) for t, left, _, _ in boxes]
    return corners, (ch, cw)


def _cut(t: torch.Tensor, crops: Crops) -> torch.Tensor:
    """Each row's window of ``t`` ``[B, ..., H, W]``."""
    corners, (h, w) = crops
    return torch.stack([t[i, ..., y:y + h, x0:x0 + w] for i, (y, x0) in enumerate(corners)])


def _paste(full: torch.Tensor, part: torch.Tensor, crops: Crops) -> torch.Tensor:
    """``full`` ``[B, ..., H, W]`` with each row's window replaced by ``part``."""
    corners, (h, w) = crops
    out = full.clone()
    for i, (y, x0) in enumerate(corners):
        out[i, ..., y:y + h, x0:x0 + w] = part[i]
    return out


def _exact_crops(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, cells: torch.Tensor,
                 crops: Crops, tol: float = 1e-4) -> bool:
    """True when the network on the windows gives F's cells as on the whole inputs (TF-style SAME pads or ops
    that see the image size would not; a graph with a constant of the image's size does not run on a window at
    all). ``cells`` ``[B, h, w]``."""
    with torch.no_grad():
        full = forward(x)
        try:
            part = forward(_cut(x, crops))
        except RuntimeError:  # e.g. an Add of a fixed-size map: torch refuses the window's shape
            return False
    (h, w), (H, W) = crops[1], x.shape[-2:]
    if part.shape[-2:] != (h * full.shape[-2] // H, w * full.shape[-1] // W):
        return False
    sy, sx = x.shape[-2] // full.shape[-2], x.shape[-1] // full.shape[-1]
    worst = 0.0
    for i, (y, x0) in enumerate(crops[0]):
        rows, cols = np.nonzero(cells[i].cpu().numpy())
        a = full[i][:, rows, cols]
        b = part[i][:, rows - y // sy, cols - x0 // sx]
        worst = max(worst, float((a - b).abs().max() / a.abs().max().clamp_min(1e-12)))
    return worst <= tol


def optimize_on_focus(forward: Callable[[torch.Tensor], torch.Tensor], build: BuildFn, objective: Objective,
                      loop: OptimizeConfig, x: torch.Tensor, b: torch.Tensor, k: torch.Tensor, sites: Sequence[Site],
                      *, crop: bool = True, places_itself: bool = False, partner: torch.Tensor | None = None,
                      callbacks: tuple[StepCallback, ...] = (), refine: Stage | None = None,
                      refine_callbacks: tuple[StepCallback, ...] = ()) -> OptimizeResult:
    """Optimize x' for rows (x, b ``[B, C, H, W]``, kernels ``k`` ``[B]``, one Site each) with the loss terms
    seeing F (``Step.focus``).

    With ``crop``, the network runs on one window per row around its rf_box (:func:`plan_crops`) when that is
    exact on F. A parameterization that ``places_itself`` on windows (the box mask, whose bands are computed on
    the whole photo: it takes ``crops`` and ``crop_size`` and has ``render``) is built on the whole inputs; any
    other one (the pixel method, the bound's free pixels) is built on the windows, and x' is the photo outside.

    With ``refine`` (a box mask refined inside its largest regions), a second optimization starts from the first
    one's grids, on the same windows, and so on while a stage names a next one (:class:`Later`: the prune and
    sharpen stages); ``steps`` are then all stages' together and ``stages`` the first one's and the later ones'
    together (the progress clock's two phases; ``refine_callbacks`` see the later stages' steps as one count).
    Each row shows one stage's result (x', mask, grid, loss): the latest one it takes (:func:`_takes`: a stage
    that loses k, or an optional one that costs more specificity than its tolerance, is refused for that row), and
    the next stage starts from each row's pick.

    Returns the result at full size (x' not yet clipped to the valid range; ``mask`` ``[B, 1, H, W]`` or None).
    """
    dev = x.device
    cells = torch.from_numpy(np.stack([s.focus.cells for s in sites])).to(dev, x.dtype)  # [B, h, w]
    boxes = torch.tensor([s.rf_box for s in sites])
    crops = plan_crops([s.rf_box for s in sites], (x.shape[-2], x.shape[-1]), (cells.shape[-2], cells.shape[-1])) \
        if crop else None
    if crops is not None and not _exact_crops(forward, x, cells, crops):
        crops = None
    if crops is None:
        focus = cells
        with torch.no_grad():
            ref = torch.relu(forward(x))

        def run(build: BuildFn, objective: Objective, loop: OptimizeConfig,
                callbacks: tuple[StepCallback, ...]) -> tuple[OptimizeResult, Any]:
            param = build(x, b, boxes=boxes)
            return optimize(forward, param, objective, ref, k, loop, callbacks, partner, focus=cells), param
    else:
        corners, (ch, cw) = crops
        with torch.no_grad():
            sy, sx = x.shape[-2] // cells.shape[-2], x.shape[-1] // cells.shape[-1]
            ref = torch.relu(forward(_cut(x, crops)))
            focus = _cut(cells, ([(y // sy, x0 // sx) for y, x0 in corners], (ch // sy, cw // sx)))
        shift = torch.tensor([[y, x0, y, x0] for y, x0 in corners])

        def run(build: BuildFn, objective: Objective, loop: OptimizeConfig,
                callbacks: tuple[StepCallback, ...]) -> tuple[OptimizeResult, Any]:
            param = build(x, b, boxes=boxes, crops=corners, crop_size=(ch, cw)) if places_itself else \
                build(_cut(x, crops), _cut(b, crops), boxes=boxes - shift)
            return optimize(forward, param, objective, ref, k, loop, callbacks, partner, focus=focus), param

    res, param = run(build, objective, loop, callbacks)
    first, outs, grids = res, [(res, param)], [res.grid]
    pick = torch.zeros(len(k), dtype=torch.long)  # the stage whose result each row shows
    scores = [_scores(forward, res.x_mod, ref, k, focus)] if refine is not None else []
    stages, offset, grid = None, 0, res.grid
    while refine is not None and grid is not None:
        later = refine(grid)
        refine = later.after
        done = res
        res, param = run(later.build, later.objective, later.loop,
                         tuple(_shift(cb, offset) for cb in refine_callbacks))
        offset += later.loop.steps
        stages = [first.steps, res.steps if stages is None else [a + c for a, c in zip(stages[1], res.steps)]]
        res.steps = [a + c for a, c in zip(done.steps, res.steps)]
        res.failed = [f or g for f, g in zip(done.failed, res.failed)]
        scores.append(_scores(forward, res.x_mod, ref, k, focus))
        outs.append((res, param))
        grids.append(res.grid)
        pick = torch.where(_takes(scores, pick, later.tolerance), len(outs) - 1, pick)
        grid = _picked(grids, pick)
    dev_loss = res.loss.device
    loss = torch.stack([o.loss for o, _ in outs])[pick.to(dev_loss), torch.arange(len(k), device=dev_loss)]
    if crops is not None and places_itself:  # the box mask (method/focus.py) renders its grids at full size
        shown = [cast(Any, p).render(o.grid) if bool((pick == i).any()) else None for i, (o, p) in enumerate(outs)]
        return OptimizeResult(_choose(pick, [s[0] if s is not None else None for s in shown]),
                              _choose(pick, [s[1] if s is not None else None for s in shown]), loss, res.steps,
                              res.failed, grid, stages)
    x_mod = _choose(pick, [o.x_mod for o, _ in outs])
    masks = [o.mask for o, _ in outs]
    mask = None if any(m is None for m in masks) else _choose(pick, cast(list[torch.Tensor], masks))
    if crops is not None:  # built on the windows: x' is the photo outside them
        x_mod = _paste(x, x_mod.detach(), crops)
        mask = None if mask is None else _paste(torch.zeros_like(x[:, :1]), mask.detach(), crops)
    return OptimizeResult(x_mod, mask, loss, res.steps, res.failed, grid, stages)


#: a later stage (coarse to fine) that leaves k below this share of its activation on F, where the first stage
#: kept more, is undone for that row: where the coarse mask keeps k only with faint mass spread over the whole box,
#: its regions above ½ (the fine stage's support) cannot hold k (docs/TRADEOFF.md, "Second retune")
KEEP_FLOOR = 0.9
#: the bar's readable share of the kept area in its 3 largest regions (issue #11)
READABLE_TOP3 = 0.8


def scores_on_sites(forward: Callable[[torch.Tensor], torch.Tensor], x_mods: Sequence[torch.Tensor],
                    x: torch.Tensor, k: torch.Tensor,
                    sites: Sequence[Site]) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The specificity on F of the whole inputs ``x`` ``[B, C, H, W]`` per row ``[B]``, and (kept_F, specificity on
    F) per row of each x' of ``x_mods`` (the torch copy; the network runs once on x for all of them)."""
    cells = torch.from_numpy(np.stack([s.focus.cells for s in sites])).to(x.device, x.dtype)
    with torch.no_grad():
        ref = torch.relu(forward(x))
        return _specificity(ref, k, cells), [_scores(forward, xm, ref, k, cells) for xm in x_mods]


def small_takes(small: tuple[torch.Tensor, torch.Tensor], soft: tuple[torch.Tensor, torch.Tensor],
                before: torch.Tensor, share: float,
                reads: tuple[Sequence[Readability], Sequence[Readability]]) -> torch.Tensor:
    """``[B]`` bool: rows that show the small-box mask's x' rather than the soft masks': k keeps as much (or ≥
    :data:`KEEP_FLOOR`) and the specificity on F gains ≥ ``share`` of the soft masks' gain over x's (``before``)
    (``focus_small_share``: so a kernel the binary mask cannot isolate, e.g. one that averages a whole region, keeps
    the soft result). ``small``, ``soft``: (kept_F, specificity) of each, from :func:`scores_on_sites`.

    ``reads``: the readability of what each candidate's x' shows, small first; a row also needs the binary
    mask to show less of its box than the soft masks (``box_shown``: faint content counted by its strength, so a
    soft mask does not win by fading) and in as few regions (a top-3 share
    ≥ the soft one's or ≥ :data:`READABLE_TOP3`): the binary mask is there to show less, and on MTCNN's face nets
    it was often taken with more area, less gain and specks (docs/TRADEOFF.md "The binary candidate must show
    less")."""
    kept, spec = small
    soft_kept, soft_spec = soft
    less = _shows_less(reads, faint=False)
    return (kept >= torch.clamp(soft_kept, max=KEEP_FLOOR)) & (spec - before >= share * (soft_spec - before)) & less


def _shows_less(reads: tuple[Sequence[Readability], Sequence[Readability]], *, faint: bool) -> torch.Tensor:
    """``[B]`` bool: the first candidate's x' shows less of the box than the second's (``box_shown``) in as few
    regions (a top-3 share ≥ the second's or ≥ :data:`READABLE_TOP3`); with ``faint``, also no more of it faintly
    (``hidden`` · ``box_shown``)."""
    return torch.tensor([a.box_shown < b.box_shown and a.top3_share >= min(b.top3_share, READABLE_TOP3)
                         and (not faint or a.hidden * a.box_shown <= b.hidden * b.box_shown)
                         for a, b in zip(*reads)], dtype=torch.bool)


def smaller_takes(heavy: tuple[torch.Tensor, torch.Tensor], soft: tuple[torch.Tensor, torch.Tensor], tolerance: float,
                  reads: tuple[Sequence[Readability], Sequence[Readability]]) -> torch.Tensor:
    """``[B]`` bool: small-box rows that show the soft stages run with the heavier area weight
    (``focus_small_soft_area``) rather than with the default one: the specificity on F stays ≥ (1 − ``tolerance``)
    of the default's, k keeps as much (or ≥ :data:`KEEP_FLOOR`), and x' shows less of the box (``box_shown``)
    with no more of it faint (``hidden`` · ``box_shown``: a heavier area weight can fade a soft mask, which
    shows the same content under a smaller contour; on EfficientNet-Lite0 layer 8 a weight of 8 did just that,
    docs/TRADEOFF.md) in as few regions (a top-3 share ≥ the default's or ≥ :data:`READABLE_TOP3`). ``heavy``,
    ``soft``: (kept_F, specificity) of each (:func:`scores_on_sites`); ``reads``: the readability of what each
    one's x' shows, heavy first."""
    # the optional stage's rule (:func:`_takes`: the heavier result as the newest "stage" after the default one)
    return _takes([soft, heavy], torch.zeros(len(heavy[0]), dtype=torch.long), tolerance) & \
        _shows_less(reads, faint=True)


def _scores(forward: Callable[[torch.Tensor], torch.Tensor], x_mod: torch.Tensor, ref: torch.Tensor,
            k: torch.Tensor, focus: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept_F, specificity on F) per row ``[B]`` of x' ``x_mod`` ``[B, C, H, W]``, on the inputs ``ref``
    ``[B, K, h, w]`` was computed on (``focus`` ``[B, h, w]``): what decides which stage a row shows."""
    with torch.no_grad():
        act = torch.relu(forward(x_mod))
        return kept_on_focus(act, ref, k, focus).cpu(), _specificity(act, k, focus)


def _specificity(act: torch.Tensor, k: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
    """k's share of the squared activation on F per row ``[B]`` (CPU), of rectified activations ``act``."""
    k_sq, others = focus_norms(act, k, focus)
    return (k_sq / (k_sq + others).clamp_min(EPS)).cpu()


def _takes(scores: list[tuple[torch.Tensor, torch.Tensor]], pick: torch.Tensor,
           tolerance: float | None) -> torch.Tensor:
    """``[B]`` bool: rows that show the newest stage (``scores[-1]``) rather than their ``pick`` so far. A stage
    every row takes (``tolerance`` None) is refused only where it leaves k under :data:`KEEP_FLOOR` and the pick
    kept more; an optional one (a share δ) is taken where the specificity stays ≥ (1 − δ) of the pick's and k
    keeps at least min(the pick's kept, KEEP_FLOOR)."""
    rows = torch.arange(len(pick))
    kept = torch.stack([s[0] for s in scores[:-1]])[pick, rows]
    spec = torch.stack([s[1] for s in scores[:-1]])[pick, rows]
    new_kept, new_spec = scores[-1]
    if tolerance is None:
        return ~((new_kept < KEEP_FLOOR) & (kept > new_kept))
    return (new_spec >= (1 - tolerance) * spec) & (new_kept >= torch.clamp(kept, max=KEEP_FLOOR))


def _picked(grids: list[torch.Tensor | None], pick: torch.Tensor) -> torch.Tensor | None:
    """Each row's grid from its picked stage, in the newest stage's shape ``[B, M, g, g]`` (a coarser or
    one-band grid as its mean, resized: the shape a next stage starts from)."""
    last = grids[-1]
    if last is None:
        return None

    def fit(g: torch.Tensor) -> torch.Tensor:
        return g if g.shape == last.shape else F.interpolate(
            g.mean(1, keepdim=True), size=last.shape[-2:], mode="bilinear", align_corners=False).expand_as(last)

    return _choose(pick, [fit(g) if g is not None and bool((pick == i).any()) else None
                          for i, g in enumerate(grids)])


def _choose(pick: torch.Tensor, values: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """Row i of ``values[pick[i]]`` (entries no row picks may be None)."""
    out = cast(torch.Tensor, values[int(pick.max())])
    for i, v in enumerate(values):
        if v is not None and bool((pick == i).any()):
            out = _rows(pick == i, v, out)
    return out


def _rows(pick: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows of ``a`` where ``pick`` ``[B]``, of ``b`` elsewhere."""
    return torch.where(pick.view(-1, *([1] * (a.dim() - 1))).to(a.device), a, b)


def _shift(callback: StepCallback, offset: int) -> StepCallback:
    """``callback`` with the step counted from ``offset`` (a later stage continues the progress of the one
    before)."""
    def shifted(step: int, loss: torch.Tensor, running: int) -> None:
        callback(step + offset, loss, running)

    return shifted


def measure(model: Model, tensor: str, t_x: np.ndarray, x_mod: np.ndarray, k: Sequence[int],
            sites: Sequence[Site]) -> tuple[list[FocusNumbers], np.ndarray]:
    """Focus metrics per row from onnxruntime on the original model: ``t_x`` ``[B, C, h, w]`` on the inputs,
    x' ``[B, C, H, W]``; also returns onnxruntime's activations on x'."""
    t_mod = model.run_ort(x_mod, (tensor,))[0]
    return [focus_metrics(t_x[i], t_mod[i], int(k[i]), s.focus.cells) for i, s in enumerate(sites)], t_mod


def baselines_on_focus(names: Sequence[str], forward: Callable[[torch.Tensor], torch.Tensor], module: Any,
                       x: torch.Tensor, b: torch.Tensor, k: torch.Tensor, sites: Sequence[Site],
                       areas: Sequence[float]) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The baselines in focus scope at our area (METHOD.md, "Against baselines at equal area"): each saliency of
    ‖r_k on F‖² (the network's map zeroed outside F), kept inside the rf_box, its top pixels with exactly our
    mask's area (``areas``: fractions of the image), x' = m ⊙ x + (1 − m) ⊙ b (not yet clipped).

    Rows are grouped by their F (the baselines see one F per call: occlusion shares passes across rows).
    Returns ``{name: (masks [B, H, W] in {0, 1}, x' [B, C, H, W], saliency [B, H, W])}``; the caller measures
    them on onnxruntime."""
    from onnx_kernelviz.baselines.base import BASELINES, equal_area_masks, resolve_names
    from onnx_kernelviz.method.references import gaussian_blur

    dev = x.device
    _, inside = box_placement(torch.tensor([s.rf_box for s in sites]), (x.shape[-2], x.shape[-1]))
    inside = inside[:, 0].to(dev)
    groups: dict[bytes, list[int]] = {}
    for row, s in enumerate(sites):
        groups.setdefault(np.packbits(s.focus.cells).tobytes() + bytes(str(s.focus.cells.shape), "ascii"),
                          []).append(row)
    out: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for name in resolve_names(names):
        sal = torch.zeros(x.shape[0], *x.shape[-2:], device=dev)
        for rows in groups.values():
            f = torch.from_numpy(sites[rows[0]].focus.cells).to(dev, x.dtype)

            def on_f(inp: torch.Tensor, f: torch.Tensor = f) -> torch.Tensor:
                return forward(inp) * f  # k's energy on F only

            r = torch.tensor(rows, device=dev)
            sal[r] = BASELINES.get(name)(on_f, b[r], module=module)(x[r], k[r]).float()
        # smoothed as for the whole-map baselines (side / 50), then ranked inside the box only (a tiny floor keeps
        # a flat saliency inside the box ahead of everything outside)
        sal = gaussian_blur(sal.unsqueeze(1), max(x.shape[-2:]) / 50)[:, 0]
        sal = (sal / sal.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1) + 1e-6) * inside
        m = equal_area_masks(sal, areas, sigma=0.0).to(x.dtype) * inside
        out[name] = (m, m.unsqueeze(1) * x + (1 - m.unsqueeze(1)) * b, sal)
    return out


#: below this oracle_gain the kernel cannot be told apart from its neighbours on F (the report says so)
SEPARABLE_GAIN = 1.5


def companions(t_x: np.ndarray, k: int, cells: np.ndarray, at_least: float = 0.5, most: int = 8) -> list[int]:
    """The kernels that fire with k on F: ‖r_j on F‖ ≥ ``at_least``·‖r_k on F‖, strongest first (``t_x``
    ``[C, h, w]``, onnxruntime on x)."""
    e = np.sqrt((np.maximum(t_x[:, np.asarray(cells, bool)], 0).astype(np.float64) ** 2).sum(1))
    order = [int(j) for j in np.argsort(-e) if j != k and e[j] >= at_least * e[k] and e[j] > 0]
    return order[:most]


def focus_block(site: Site, n: FocusNumbers, oracle: FocusNumbers | None, t_x: np.ndarray, k: int,
                reference: FocusNumbers | None = None, binary_mask: bool | None = None) -> FocusMetrics:
    """The contract's ``focus`` block of one result (CONTRACT.md, "Local explanations: focus"), plus
    ``separable`` (oracle_gain ≥ SEPARABLE_GAIN; null without a bound), ``companions`` (kernels firing
    with k on F, listed when it is not separable), ``kept_on_reference`` (k's kept on F when x' is the reference
    alone, nothing of the photo kept; null when not measured) and ``binary_mask`` (x' is the small-box mask's:
    each pixel the photo's or the reference's; null when not known)."""
    gain = None if oracle is None else oracle.gain
    separable = None if gain is None else bool(gain >= SEPARABLE_GAIN)
    return FocusMetrics(kept=n.kept, others_kept=n.others_kept, specificity_after=n.specificity_after,
                        specificity_before=n.specificity_before, peak=site.focus.peak, cells=site.focus.count,
                        rf_box=site.rf_box, oracle_gain=gain,
                        extra={"separable": separable,
                               "companions": companions(t_x, k, site.focus.cells) if separable is False else [],
                               "kept_on_reference": None if reference is None else reference.kept,
                               "binary_mask": binary_mask})
