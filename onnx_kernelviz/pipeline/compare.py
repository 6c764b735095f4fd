"""``kernelviz compare``: do the explanations of two similar kernels tell them apart?

For two kernels a, b of one layer whose activation maps on an image overlap (by default a pair that both fire
strongly and alike: :func:`pick_pair`), explain both, then measure on onnxruntime how much of each kernel survives
under each explanation: a good explanation of a keeps a and drops b, and the reverse (docs/METHOD.md,
"Similar kernels"). The same is measured for every baseline at the same mask area, which can only say where a
kernel fires.

The explanations are made by the steps of ``explain`` (:func:`~onnx_kernelviz.pipeline.explain.explain_items`, on
inputs prepared once) into the same folder, so DIR holds the usual results.json next to compare.json, and one
report.html shows both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from onnx_kernelviz.baselines import resolve_names
from onnx_kernelviz.errors import KernelvizError, UsageError
from onnx_kernelviz.frontend.layers import Layer, conv_weights
from onnx_kernelviz.io.files import write_json
from onnx_kernelviz.io.images import list_images
from onnx_kernelviz.io.outdir import OutDir
from onnx_kernelviz.io.preprocess import Preprocess
from onnx_kernelviz.measure.metrics import correlation, kernel_energy, kernel_metrics, rectified
from onnx_kernelviz.measure.pairs import DEFAULT_CONTRAST, SEPARATION, advice, separation
from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.method.focus import pair_cells
from onnx_kernelviz.model import Model
from onnx_kernelviz.pipeline.explain import ProgressFn, StepProgressFn, check_at, explain_items, run_header
from onnx_kernelviz.pipeline.focus import site_of
from onnx_kernelviz.pipeline.journal import Journal
from onnx_kernelviz.pipeline.prepare import prepare
from onnx_kernelviz.results import CompareResult, FocusPair, PairKept

__all__ = ["compare", "pick_pair", "most_correlated_pair", "cross_kept", "measure_pair", "filter_cosine",
           "separation", "SEPARATION", "CONTRAST"]

#: weight of the partner-suppression term when explaining a against b (and b against a); 0 gives the plain
#: explanations of ``explain``
CONTRAST = DEFAULT_CONTRAST

#: a kernel takes part in the automatic pick when ‖r_k(x)‖ is at least this fraction of the layer's largest:
#: kernels that fire on a handful of positions correlate by accident and have little to explain.
MIN_SHARE = 0.05
#: the most kernels a pick correlates pairwise (the strongest ones): its matrices grow with the square of the
#: kernels, and a valid 480 KB model (one 1x1 conv with 40,000 output channels) made them 38 GB. Above the widest
#: layers of real CNNs (2048-4096), so their picks are unchanged; 3 x 4096^2 float64 is 400 MB.
MAX_PAIR_CANDIDATES = 4096


def _candidates(t: np.ndarray, min_share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rectified maps ``[C, h·w]``, each kernel's share ‖r_k‖ / max_j ‖r_j‖ ``[C]``, and the kernels that take
    part in a pick: a non-constant map and a share ≥ ``min_share`` (every firing kernel when fewer than two pass),
    at most the :data:`MAX_PAIR_CANDIDATES` strongest.

    Raises:
        UsageError: fewer than two kernels fire with a non-constant map.
    """
    r = rectified(t)
    energy = kernel_energy(t)
    share = energy / max(float(energy.max()), 1e-30)
    varying = r.std(axis=1) > 0
    idx = np.flatnonzero(varying & (share >= min_share))
    if len(idx) < 2:
        idx = np.flatnonzero(varying & (energy > 0))
    if len(idx) < 2:
        raise UsageError("fewer than two kernels of this layer fire (with a non-constant map) on this image; "
                         "pick another image or layer, or give --kernel A --kernel B")
    if len(idx) > MAX_PAIR_CANDIDATES:
        idx = np.sort(idx[np.argsort(-share[idx], kind="stable")[:MAX_PAIR_CANDIDATES]])
    return r, share, idx


def most_correlated_pair(t: np.ndarray, min_share: float = MIN_SHARE) -> tuple[int, int, float]:
    """The pair (a < b) of active kernels whose rectified maps are most correlated, and that correlation.

    Args:
        t: activations of one image ``[C, h, w]`` (onnxruntime).
        min_share: least ‖r_k‖ relative to the strongest kernel (falls back to every firing kernel when fewer
            than two pass).

    Raises:
        UsageError: fewer than two kernels fire with a non-constant map.
    """
    r, share, idx = _candidates(t, min_share)
    c = np.corrcoef(r[idx])
    np.fill_diagonal(c, -np.inf)
    i, j = np.unravel_index(int(np.argmax(c)), c.shape)
    a, b = sorted((int(idx[i]), int(idx[j])))
    return a, b, correlation(t[a], t[b])


#: the automatic pick wants both kernels to fire strongly and their maps to agree: a pair scores the weaker of
#: the two, min(correlation, the weaker kernel's ‖r‖ / the strongest kernel's ‖r‖), so it must do well on both
PICK_RULE = "largest min(correlation, the weaker kernel's share of the strongest kernel's activation)"


def pick_pair(t: np.ndarray, min_share: float = MIN_SHARE) -> tuple[int, int, float, dict]:
    """The pair (a < b) of kernels that both fire strongly and fire alike on this image, its correlation, and
    why it was picked (compare.json's ``picked``).

    Each kernel's *share* is ‖r_k‖ / max_j ‖r_j‖ (1 for the strongest kernel of the layer on this image); the
    score of a pair is the smaller of its correlation (Pearson, of r_a and r_b over positions) and its weaker
    kernel's share. The most correlated pair alone is often two weak kernels that fire on a few cells (default
    model, layer 20, coffee.jpg: correlation 0.54 at a share of 0.17); the strongest pair alone, or the product of
    the two, often two kernels that fire in different places (correlation 0.34 at 0.92): neither is a pair worth
    telling apart. The minimum balances them (0.43 at 0.50 there).

    Args:
        t: activations of one image ``[C, h, w]`` (onnxruntime).
        min_share: kernels under this share take no part (falls back to every firing kernel when fewer than two
            pass).

    Raises:
        UsageError: fewer than two kernels fire with a non-constant map.
    """
    r, share, idx = _candidates(t, min_share)
    c = np.corrcoef(r[idx])
    weaker = np.minimum(share[idx][:, None], share[idx][None, :])
    score = np.minimum(np.clip(c, 0, None), weaker)
    np.fill_diagonal(score, -np.inf)
    i, j = np.unravel_index(int(np.argmax(score)), score.shape)
    a, b = sorted((int(idx[i]), int(idx[j])))
    corr = correlation(t[a], t[b])
    np.fill_diagonal(c, -np.inf)
    mi, mj = np.unravel_index(int(np.argmax(c)), c.shape)
    why = {"by": "score", "rule": PICK_RULE, "score": float(score[i, j]), "correlation": corr,
           "share_a": float(share[a]), "share_b": float(share[b]), "candidates": int(len(idx)),
           "min_share": float(min_share),
           "most_correlated": [int(min(idx[mi], idx[mj])), int(max(idx[mi], idx[mj])), float(c[mi, mj])]}
    return a, b, corr, why


def filter_cosine(model: Model, layer: Layer, a: int, b: int) -> float | None:
    """Cosine of kernels a and b's conv weights, or None when they read different input channels (grouped and
    depthwise convs) or the weights are not constants. Near 1, both compute almost the same function of the same
    input: a mask over the photo cannot keep one and drop the other (the pixel method still can, at a cost)."""
    if layer.group != 1:
        return None
    w, _ = conv_weights(model.graph, layer)
    if w is None or w.ndim < 2 or max(a, b) >= len(w):
        return None
    wa, wb = w[a].ravel().astype(np.float64), w[b].ravel().astype(np.float64)
    return float(wa @ wb / (np.linalg.norm(wa) * np.linalg.norm(wb) + 1e-12))


def cross_kept(t_x: np.ndarray, t_mod: np.ndarray, a: int, b: int, cells: np.ndarray | None = None) -> PairKept:
    """kept_a and kept_b under x'_a and under x'_b, from activations on x ``[C, h, w]`` and on x'_a, x'_b
    (``t_mod [2, C, h, w]``); on the focus cells ``cells`` ``[h, w]`` only when given."""
    if cells is not None:
        sel = np.asarray(cells, bool)
        t_x, t_mod = t_x[:, sel][..., None], t_mod[:, :, sel][..., None]
    return PairKept(*(kernel_metrics(t_x, t_mod[row], kk).kept for row in (0, 1) for kk in (a, b)))


def compare(model: Model, image: str | Path, layer: str | int, kernels: tuple[int, int] | None,
            out_dir: str | Path, *, preprocess: Preprocess, config: ExplainConfig = ExplainConfig(),
            force: bool = False, contrast: float = CONTRAST, progress: ProgressFn | None = None,
            on_step: StepProgressFn | None = None) -> CompareResult:
    """Explain kernels a and b of ``layer`` on ``image`` and measure how well each explanation separates them.

    Args:
        kernels: ``(a, b)``, or None for the pair :func:`pick_pair` picks (both firing strongly, and alike).
        config: the explanation settings; ``config.baselines`` empty means every baseline (at our mask's area, or
            for the pixel method at the fraction of pixels x' leaves unchanged).
        contrast: weight of suppressing the other kernel of the pair in particular (x'_a keeps a and drops b);
            0 explains each kernel as ``explain`` does, against all other kernels alike.
        progress, on_step: as for :func:`~onnx_kernelviz.pipeline.explain.explain`.

    Returns:
        compare.json's content (docs/CONTRACT.md, "compare"), also written to ``out_dir`` with report.html.

    Raises:
        UsageError: bad layer or kernels, a kernel silent on the image, a negative ``contrast``, or a non-empty
            ``out_dir`` without ``force``.
    """
    if contrast < 0:
        raise UsageError(f"--contrast must be at least 0 (got {contrast})")
    cfg = replace(config, baselines=tuple(resolve_names(config.baselines or ("all",))), top_images=None).validate()
    la = model.layer(layer)
    paths = list_images([Path(image)])
    if len(paths) != 1:
        raise UsageError(f"compare takes one image; {image} holds {len(paths)}")
    with OutDir(out_dir, force=force, resume=False, resumable=False) as od:
        prep = prepare(model, paths, la, preprocess, cfg)  # once: it picks the pair and is explained
        t_x = prep.t_ort[0]
        if kernels is None:
            a, b, corr, picked = pick_pair(t_x)
        else:
            a, b = (int(k) for k in kernels)
            _check_kernels(a, b, t_x)
            corr, picked = correlation(t_x[a], t_x[b]), {"by": "given"}
        site, scope_note = None, None
        if cfg.scope == "focus":  # both kernels explained on the same cells: where both fire strongly
            check_at(cfg.at, prep)
            at = cfg.at
            silent = [k for k in (a, b) if at is not None and t_x[k][at] <= 0]
            if at is not None and silent:  # no shared focus there: kept of a kernel that does not fire is 0/0
                raise UsageError(f"kernel {silent[0]} does not fire at row {at[0]}, col {at[1]} "
                                 "(r = 0 there), so the pair cannot be compared there; give a cell where both fire, "
                                 "or leave out --at")
            cells = pair_cells(t_x[a], t_x[b], cfg.at)
            if cells is None:  # nothing shared to focus on: their maps alone tell them apart, so compare whole maps
                scope_note = (f"kernels {a} and {b} never fire on the same cell of this image: compared on the "
                              "whole activation map (--scope map)")
                cfg = replace(cfg, scope="map", at=None)
            else:
                site = site_of(model, la.tensor, cells, (prep.x.shape[-2], prep.x.shape[-1]))
        cfg = replace(cfg, partners=((a, b), (b, a)), contrast=float(contrast))
        journal = Journal.start(od.path, run_header(model, la, cfg, preprocess, f"{a},{b}",
                                                       (int(prep.x.shape[-2]), int(prep.x.shape[-1]))), resume=False)
        run = explain_items(model, prep, [(0, a), (0, b)], od, journal, cfg, preprocess, progress=progress,
                            on_step=on_step, report=False,
                            sites=None if site is None else {(0, a): site, (0, b): site})
        res = {r.kernel: r for r in run.results}
        for k in (a, b):
            if k not in res or res[k].status != "ok":
                raise KernelvizError(f"the explanation of kernel {k} did not finish: "
                                     f"{res[k].reason if k in res else 'no result'}")
        fa, fb = res[a].files, res[b].files
        ours, theirs = measure_pair(model, la.tensor, t_x, od.path, fa, fb, a, b)
        on_f = None
        if site is not None:
            f_ours, f_theirs = measure_pair(model, la.tensor, t_x, od.path, fa, fb, a, b, site.focus.cells)
            blocks = [res[k].focus for k in (a, b)]  # each explanation's focus block, on the same shared cells
            on_ref = [None if f is None else f.extra.get("kept_on_reference") for f in blocks]
            on_f = FocusPair(site.focus.peak, site.focus.count, site.rf_box, f_ours, f_theirs,
                             (on_ref[0], on_ref[1]))
        cosine = filter_cosine(model, la, a, b)
        files = {"original": fa["original"], "modified_a": fa["modified"], "modified_b": fb["modified"],
                 "mask_a": fa["mask"], "mask_b": fb["mask"], "act_a": fa["act_before"], "act_b": fb["act_before"]}
        for s, f in (("a", fa), ("b", fb)):  # the focus pictures, when explain drew them: the report leads with these
            files.update({f"{key}_{s}": f[key] for key in ("focus_crop", "focus_crop_modified", "focus_photo")
                          if f.get(key)})
            for name in theirs:
                if f"baseline_modified:{name}" in f:
                    files[f"baseline_modified_{s}:{name}"] = f[f"baseline_modified:{name}"]
        told = (ours if on_f is None else on_f.ours).told_apart
        result = CompareResult(str(model.path), la.name, la.tensor, la.index, str(paths[0]), prep.notes[0], (a, b),
                               corr, picked, cfg.contrast, cfg.method, cosine, ours, theirs, files,
                               advice=None if told else advice(cfg.method, cfg.contrast, cosine), scope=cfg.scope,
                               focus=on_f, scope_note=scope_note)
        write_json(od.path / "compare.json", result.to_json())
        from onnx_kernelviz.report.html import write_report
        write_report(od.path)
        return result


def _check_kernels(a: int, b: int, t_x: np.ndarray) -> None:
    channels = t_x.shape[0]
    for k in (a, b):
        if not 0 <= k < channels:
            raise UsageError(f"kernel {k} is out of range: this layer has {channels} kernels (0..{channels - 1})")
    if a == b:
        raise UsageError(f"compare needs two different kernels (got {a} twice)")
    energy = kernel_energy(t_x)
    for k in (a, b):
        if energy[k] <= 0:
            raise UsageError(f"kernel {k} does not fire on this image (‖r_k(x)‖ = 0); nothing to compare")


def measure_pair(model: Model, tensor: str, t_x: np.ndarray, out: Path, files_a: Mapping[str, str | None],
                 files_b: Mapping[str, str | None], a: int, b: int,
                 cells: np.ndarray | None = None) -> tuple[PairKept, dict[str, PairKept]]:
    """kept_a / kept_b under x'_a and x'_b, for ours and for each baseline that ``explain`` ran at our mask's area,
    all from onnxruntime on the x' that ``explain`` saved (``modified.npy``, ``baseline_<name>_modified.npy``), so
    nothing is optimized or computed twice.

    Args:
        t_x: onnxruntime activations of the image ``[C, H, W]``; out: the explain folder;
        files_a, files_b: the ``files`` of kernel a's and kernel b's results;
        cells: the pair's focus cells ``[h, w]``: kept on them only (focus scope), else on the whole map.

    Returns:
        ``(ours, {name: baseline})``.
    """
    def kept(key_a: str, key_b: str) -> PairKept:
        xb = np.stack([np.load(out / str(files_a[key_a])), np.load(out / str(files_b[key_b]))]).astype(np.float32)
        return cross_kept(t_x, model.run_ort(xb, (tensor,))[0], a, b, cells)

    prefix = "baseline_modified_npy:"
    names = [key[len(prefix):] for key in files_a if key.startswith(prefix) and key in files_b]
    return kept("modified_npy", "modified_npy"), {n: kept(prefix + n, prefix + n) for n in names}
