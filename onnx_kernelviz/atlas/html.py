"""``atlas.html`` and its pages: static HTML that opens from disk, with no script and no network.

- ``atlas.html``: the model overview (each layer with its dead, duplicate and rarely-firing counts) and the filters.
- ``pages/L012.html`` (``-2``, ``-3``… for more than ``PAGE`` kernels): a layer's grid of kernel tiles — the best
  exemplar's receptive-field crop and, when explained, what the explanation kept — and an index of kernel numbers
  to jump to any kernel (the search, without JavaScript).
- ``pages/L012/k0007.html``: one kernel — statistics, histogram, exemplars, explanations, its most correlated
  kernels with the ``kernelviz compare`` command for each pair.
- ``pages/dead.html``, ``pages/duplicates.html``, ``pages/rare.html``: the filters across layers.

A Content-Security-Policy stricter than the explanation report's: local images and one local stylesheet
(``pages/atlas.css``, shared by the pages rather than inlined in 10^4 of them), no inline style, no script. Every
string from the model or the file system is escaped. Thumbnails are strips of small JPEG squares loaded lazily,
so a layer page of ``PAGE`` tiles stays light in an atlas of 10,000 kernels.
"""

from __future__ import annotations

import html
import shlex
from pathlib import Path
from urllib.parse import quote

from onnx_kernelviz.atlas.outputs import Atlas
from onnx_kernelviz.io.files import write_text
from onnx_kernelviz.report.html import CSS_FILE
from onnx_kernelviz.report.sentence import REFERENCE_KEEPS, needs_no_photo

#: kernel tiles per layer page
PAGE = 256
#: the browser refuses anything but local images and the local stylesheet: the pages stay offline and inert
CSP = "default-src 'none'; img-src 'self'; style-src 'self'"
CSS = "pages/atlas.css"
#: displayed size of one square of a strip on the kernel pages (CSS px)
SHOW = 128

_CSS = f"""
.tiles{{display:grid;grid-template-columns:repeat(auto-fill,minmax(112px,1fr));gap:8px;margin:8px 0}}
.tile{{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:4px;text-decoration:none;
color:var(--fg);font-size:.8em;line-height:1.25}}
.tile .pics{{display:flex;gap:2px}}
.tile img{{width:50px;height:50px;object-fit:cover;object-position:0 0;border:0;border-radius:2px;background:#444}}
.tile img.x{{object-position:100% 0}}
.tile.one .pics img{{width:102px;height:102px}}
.tile.dead{{opacity:.55}}.tile .none{{height:50px;display:flex;align-items:center;color:var(--muted)}}
.b-dead{{background:var(--bad);color:var(--badfg)}}.b-dup{{background:var(--warn);color:var(--warnfg)}}
.b-rare{{background:#e6ecfb;color:#2c4a9a}}.b-flat{{background:#efe6fb;color:#5a2c9a}}
.idx a{{display:inline-block;min-width:3.2em;font-variant-numeric:tabular-nums}}
.hist{{display:flex;align-items:flex-end;gap:1px;height:80px;border-bottom:1px solid var(--line);max-width:600px}}
.hist div{{flex:1;background:var(--accent);min-height:1px}}
{"".join(f".h{i}{{height:{i * 5}%}}" for i in range(21))}
.histlabels{{display:flex;justify-content:space-between;color:var(--muted);font-size:.8em;max-width:600px}}
.strip img{{height:{SHOW}px;width:auto;max-width:none;border-radius:2px}}
.strip .caps{{display:flex}}.strip .caps span{{width:{SHOW}px;flex:none;font-size:.8em;color:var(--muted);
padding-right:6px;overflow-wrap:anywhere}}
pre.cmd{{background:#eef0f4;padding:6px 8px;border-radius:4px;white-space:pre-wrap;word-break:break-all;margin:2px 0;
text-align:left}}
nav.pager a,nav.pager b{{margin-right:8px}}
"""


def _e(v: object) -> str:
    return html.escape(str(v), quote=True)


def _seconds(h: dict) -> str:
    """The atlas's wall time: over all its runs after a --resume, with this run's own beside it."""
    runs = h.get("runs", 1)
    if runs > 1:
        return f'{_f(h["seconds"], 4)} over {runs} runs (this run {_f(h["seconds_this_run"], 4)})'
    return _f(h["seconds"], 4)


def _f(v: object, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return _e(v)


def _fires_on_flat(row: dict) -> bool:
    """True when one of the kernel's focus explanations keeps ≥ REFERENCE_KEEPS of its activation on the reference
    alone (report/sentence.py ``needs_no_photo``): it fires there with no detail of the photo."""
    return any(e["status"] == "ok" and e.get("focus") and needs_no_photo(e["focus"]) for e in row["explanations"])


def shell_path(path: str) -> str:
    """``path`` as one shell word that the command reads as a path, for commands users copy and paste.

    ``shlex.quote`` stops the shell from splitting or expanding it, but a relative path that starts with ``-``
    (an image named ``--help.jpg``, or ``-rf``) stays an option for the command: Click would read ``--out …``
    hidden in a file name as an option. ``./`` in front makes it a path again and names the same file.
    """
    return shlex.quote(f"./{path}" if path.startswith("-") else path)


def _href(path: str, depth: int) -> str:
    """A DIR-relative path as a link from a page ``depth`` folders below DIR."""
    return _e("../" * depth + quote(path))


def layer_page(layer: int, page: int = 1) -> str:
    return f"pages/L{layer:03d}{'' if page == 1 else f'-{page}'}.html"


def kernel_page(layer: int, kernel: int) -> str:
    return f"pages/L{layer:03d}/k{kernel:04d}.html"


def _page(title: str, body: str, depth: int) -> str:
    home = _href("atlas.html", depth)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{_e(title)}</title>'
            f'<link rel="stylesheet" href="{_href(CSS, depth)}"></head><body><header><p><a href="{home}">Atlas '
            f"overview</a></p><h1>{_e(title)}</h1></header><main>{body}</main>"
            "<footer>kernelviz atlas</footer></body></html>")


class _Writer:
    def __init__(self, out: Path, atlas: Atlas) -> None:
        self.out, self.atlas = out, atlas
        self.by_layer: dict[int, list[dict]] = {}
        for row in atlas.kernels:
            self.by_layer.setdefault(row["layer"], []).append(row)
        self.model = atlas.header.get("model", "")

    def write(self, rel: str, title: str, body: str) -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        # pictures and pages are redrawn by a rerun: renamed into place, not synced to disk one by one
        write_text(path, _page(title, body, rel.count("/")), durable=False)

    def img(self, rel: str | None, alt: str, depth: int, cls: str = "") -> str:
        if not rel or not (self.out / rel).is_file():
            return ""
        c = f' class="{cls}"' if cls else ""
        return f'<img src="{_href(rel, depth)}" alt="{_e(alt)}" loading="lazy"{c}>'

    def strip(self, rel: str | None, captions: list[str], alt: str, depth: int) -> str:
        """A strip of squares at ``SHOW`` px each, with one caption under each square."""
        tag = self.img(rel, alt, depth)
        caps = "".join(f"<span>{c}</span>" for c in captions)
        return f'<div class="strip">{tag}<div class="caps">{caps}</div></div>' if tag else ""

    def badges(self, row: dict) -> str:
        out = ""
        if row["dead"]:
            out += '<span class="badge b-dead">dead</span>'
        if row["duplicate_of"] >= 0:
            out += f'<span class="badge b-dup">dup of {row["duplicate_of"]}</span>'
        if row["rarely_firing"]:
            out += '<span class="badge b-rare">rare</span>'
        if _fires_on_flat(row):
            out += '<span class="badge b-flat">no photo needed</span>'
        return out

    def tile(self, row: dict, depth: int) -> str:
        lay, k = row["layer"], row["kernel"]
        expl = next((e for e in row["explanations"] if e["status"] == "ok"), None)
        # the first square of the exemplar strip; the second square (x') of the first explanation's strip
        pics = self.img(row["exemplar_strip"], f"layer {lay} kernel {k}: where it fires most", depth)
        if expl:
            pics += self.img(expl["strip"], f"kernel {k}: what the explanation keeps", depth, "x")
        one = "" if expl else " one"
        if not pics:
            pics = '<span class="none">never fires</span>'
        return (f'<a class="tile{one}{" dead" if row["dead"] else ""}" id="k{k}" '
                f'href="{_href(kernel_page(lay, k), depth)}"><span class="pics">{pics}</span>'
                f'<b>k{k}</b> {row["firing_rate"]:.0%}{self.badges(row)}</a>')

    # -- pages --------------------------------------------------------------------------------------------------

    def overview(self) -> None:
        h = self.atlas.header
        rows = "".join(
            f'<tr><td><a href="{_href(layer_page(la["index"]), 0)}">{la["index"]}</a></td>'
            f'<td><code>{_e(la["tensor"])}</code></td><td>{la["channels"]}</td>'
            f'<td>{"×".join(map(str, la["shape"] or []))}</td><td>{la["dead"]}</td><td>{la["duplicates"]}</td>'
            f'<td>{la["rarely_firing"]}</td></tr>' for la in h["layers"])
        skipped = "".join(f"<li><code>{_e(s['image'])}</code>: {_e(s['reason'])}</li>" for s in h.get("skipped", []))
        total = sum(la["channels"] for la in h["layers"])
        body = (f'<div class="meta"><div><b>model</b><code>{_e(h["model"])}</code></div>'
                f'<div><b>images</b>{h["images"]} ({h["images_skipped"]} skipped)</div>'
                f'<div><b>kernels</b>{total} in {len(h["layers"])} layers</div>'
                f'<div><b>engine</b>{_e(h["engine"])}</div><div><b>seconds</b>{_seconds(h)}</div></div>'
                f'<h2>Filters</h2><p><a href="{_href("pages/dead.html", 0)}">{len(h["dead"])} dead kernels</a> · '
                f'<a href="{_href("pages/duplicates.html", 0)}">{len(h["duplicates"])} duplicate pairs</a> '
                f'(correlation ≥ {_f(h["settings"]["dup_corr"])}) · '
                f'<a href="{_href("pages/rare.html", 0)}">rarely firing kernels</a> '
                f'(on ≤ {h["settings"]["rare"]:.0%} of the images) · '
                f'<a href="{_href("pages/flat.html", 0)}">kernels that need no detail of the photo</a> '
                "(fire on the reference alone where explained)</p>"
                "<h2>Layers</h2><p>Open a layer for its kernels; each layer page has an index of kernel numbers.</p>"
                '<div class="scroll"><table><thead><tr><th>layer</th><th>tensor</th><th>kernels</th><th>map</th>'
                f"<th>dead</th><th>duplicate pairs</th><th>rarely firing</th></tr></thead><tbody>{rows}</tbody>"
                "</table></div>" + (f"<h2>Skipped images</h2><ul>{skipped}</ul>" if skipped else ""))
        self.write("atlas.html", f"Kernel atlas of {Path(self.model).name}", body)

    def layer(self, index: int, rows: list[dict]) -> None:
        pages = max(1, -(-len(rows) // PAGE))
        info = next(la for la in self.atlas.header["layers"] if la["index"] == index)
        index_links = " ".join(f'<a href="{_href(kernel_page(index, r["kernel"]), 1)}">{r["kernel"]}</a>'
                               for r in rows)
        for p in range(1, pages + 1):
            pager = " ".join(f"<b>{q}</b>" if q == p else f'<a href="{_href(layer_page(index, q), 1)}">{q}</a>'
                             for q in range(1, pages + 1))
            tiles = "".join(self.tile(r, 1) for r in rows[(p - 1) * PAGE:p * PAGE])
            body = (f'<p class="nums">tensor <code>{_e(info["tensor"])}</code> · {info["channels"]} kernels · '
                    f'{info["dead"]} dead · {info["duplicates"]} duplicate pairs · {info["rarely_firing"]} rarely '
                    "firing. Each tile: where the kernel fires most (its receptive field on the best image) and, "
                    "when explained, what the explanation keeps there; the share of images it fires on.</p>"
                    + (f'<nav class="pager">Page {pager}</nav>' if pages > 1 else "")
                    + f'<details><summary>Go to kernel number…</summary><p class="idx">{index_links}</p></details>'
                    f'<div class="tiles">{tiles}</div>')
            self.write(layer_page(index, p), f"Layer {index}", body)

    def kernel(self, row: dict, rows: list[dict]) -> None:
        lay, k, d = row["layer"], row["kernel"], 2
        nav = " · ".join(
            [f'<a href="{_href(layer_page(lay, k // PAGE + 1), d)}#k{k}">layer {lay}</a>']
            + [f'<a href="{_href(kernel_page(lay, j), d)}">{label}</a>' for j, label in
               ((k - 1, "← previous"), (k + 1, "next →")) if 0 <= j < len(rows)])
        stats = "".join(f"<tr><td>{name}</td><td>{_f(row[key])}</td></tr>" for name, key in (
            ("fires on (share of images)", "firing_rate"), ("mean activation", "mean"), ("std", "std"),
            ("largest activation", "max"), ("dead", "dead"), ("largest correlation with another kernel", "max_corr")))
        if row["duplicate_of"] >= 0:
            stats += (f'<tr><td>duplicate of</td><td><a href="{_href(kernel_page(lay, row["duplicate_of"]), d)}">'
                      f'kernel {row["duplicate_of"]}</a></td></tr>')
        bars, labels = self.histogram(row["histogram"])
        exemplars = self.strip(row["exemplar_strip"], [
            f'<code>{_e(Path(e["image"]).name)}</code> ({e["row"]}, {e["col"]}) = {_f(e["value"])}'
            for e in row["exemplars"]], f"layer {lay} kernel {k}: its exemplars", d)
        expl = "".join(self.explanation(e, d) for e in row["explanations"])
        best = row["exemplars"][0]["image"] if row["exemplars"] else "IMAGE"
        corr = "".join(
            f'<tr><td><a href="{_href(kernel_page(lay, c["kernel"]), d)}">{c["kernel"]}</a></td>'
            f'<td>{_f(c["corr"])}</td><td>{_f(c["filter_cosine"])}</td><td><pre class="cmd">'
            f"{_e(self.compare(best, lay, k, c['kernel']))}</pre></td></tr>" for c in row["correlated"])
        body = (f'<p>{nav}{self.badges(row)}</p><h2>Statistics</h2><table><tbody>{stats}</tbody></table>'
                "<h3>Its peak on each image (first bar: images where it stays 0)</h3>"
                f'<div class="hist">{bars}</div>{labels}<h2>Where it fires most</h2>'
                "<p>The receptive field of its peak cell on the images where it fires most.</p>"
                f'{exemplars or "<p>It fires on none of the images.</p>"}'
                + (f"<h2>Explanations</h2>{expl}" if expl else "")
                + "<h2>Most correlated kernels</h2><p>Correlation of the activations over all images and "
                "positions; the filters' cosine (— for depthwise or grouped convs); the command that explains "
                "the pair against each other on this kernel's best image.</p>"
                '<div class="scroll"><table><thead><tr><th>kernel</th><th>corr</th><th>filter cosine</th>'
                f"<th>compare</th></tr></thead><tbody>{corr}</tbody></table></div>")
        self.write(kernel_page(lay, k), f"Layer {lay}, kernel {k}", body)

    def histogram(self, hist: list[int]) -> tuple[str, str]:
        """Bars of the per-image peak histogram: bin 0 (never fires) and the non-empty range of log2 bins."""
        edges = self.atlas.header["histogram_edges"]
        used = [i for i, v in enumerate(hist) if v and i > 0]
        lo, hi = (used[0], used[-1]) if used else (1, 1)
        top = max(hist) or 1
        bins = [0, *range(lo, hi + 1)]
        bars = "".join(f'<div class="h{round(20 * hist[i] / top)}" title="{hist[i]} images"></div>' for i in bins)
        low = edges[lo - 2] if lo >= 2 else 0.0
        high = edges[min(hi - 1, len(edges) - 1)]
        return bars, (f'<div class="histlabels"><span>0</span><span>{_f(low)}</span><span>{_f(high)}</span></div>')

    def explanation(self, e: dict, d: int) -> str:
        if e["status"] != "ok":
            return f'<p class="reason failed">{_e(Path(e["image"]).name)}: {_e(e.get("reason") or e["status"])}</p>'
        f = e.get("focus")
        where = "its receptive field" if f else "the cell's receptive field"
        # a small-box row may show the binary mask (focus block's binary_mask): x' is the photo or the reference
        # pixel by pixel, which its caption says, so its specks do not read as a faded picture
        binary = bool(f and f.get("binary_mask"))
        kept = "x′: what is kept (binary: the photo's pixels or the reference)" if binary else "x′: what is kept"
        pics = self.strip(e["strip"], [f"the photo ({where}), the kept region outlined", kept],
                          f"explanation on {Path(e['image']).name}", d)
        whole = (f"whole map: kept {_f(e['kept'])} · others kept {_f(e['others_kept'])} · specificity "
                 f"{_f(e['specificity_before'])} → {_f(e['specificity_after'])} · mask area {_f(e['mask_area'])} · "
                 f"parity {'ok' if e['parity_ok'] else 'NOT ok'}")
        local = ""
        if f:
            gain = f["specificity_after"] / f["specificity_before"] if f["specificity_before"] else None
            bound = "" if f["oracle_gain"] is None else f" (the most any input change reached: ×{_f(f['oracle_gain'])})"
            local = (f'<p>On the {f["cells"]} cells around its peak: kernel {e["kernel"]} keeps {_f(f["kept"])} of its '
                     f"activation while the others keep {_f(f['others_kept'])}; specificity "
                     f"{_f(f['specificity_before'])} → {_f(f['specificity_after'])}"
                     f"{'' if gain is None else ' (×' + _f(gain) + ')'}{bound}.</p>")
            if needs_no_photo(f):
                local += (f'<p class="reason inactive">It keeps {_f(f["kept_on_reference"])} of that activation even '
                          "on the reference alone, with nothing of the photo kept: it needs no detail of the photo "
                          "to fire here.</p>")
            if f.get("separable") is False:
                others = ", ".join(str(j) for j in f.get("companions") or []) or "none listed"
                local += ('<p class="reason inactive">No input change tells it apart from the kernels that fire with '
                          f"it here ({_e(others)}): they read the same input features at this layer.</p>")
        return (f'<div class="card"><p><code>{_e(Path(e["image"]).name)}</code> at cell ({e["row"]}, {e["col"]})'
                f'</p>{pics}{local}<p class="nums">{whole}</p></div>')

    def compare(self, image: str, layer: int, a: int, b: int) -> str:
        return (f"kernelviz compare {shell_path(self.model)} {shell_path(image)} --layer {layer} "
                f"--kernel {a} --kernel {b} --out compare_L{layer}_{a}_{b}")

    def filters(self) -> None:
        def link(lay: int, k: int) -> str:
            return f'<a href="{_href(kernel_page(lay, k), 1)}">layer {lay} kernel {k}</a>'

        rows = {(r["layer"], r["kernel"]): r for r in self.atlas.kernels}
        dead = "".join(f"<li>{link(lay, k)}</li>" for lay, k in self.atlas.header["dead"])
        self.write("pages/dead.html", "Dead kernels",
                   "<p>r_k = 0 on every image: the kernel never fires on these images (pruning candidates).</p>"
                   f"<ul>{dead or '<li>none</li>'}</ul>")
        dups = "".join(
            f'<tr><td>{link(d["layer"], d["a"])}</td><td>{link(d["layer"], d["b"])}</td><td>{_f(d["corr"], 4)}</td>'
            f'<td>{_f(d["filter_cosine"])}</td><td><div class="tile one"><span class="pics">'
            f'{self.img(rows[(d["layer"], d["a"])]["exemplar_strip"], "where a fires most", 1)}'
            f"</span></div></td></tr>" for d in self.atlas.header["duplicate_details"])
        self.write("pages/duplicates.html", "Duplicate kernels",
                   f"<p>Pairs a &lt; b whose activations correlate ≥ {_f(self.atlas.header['settings']['dup_corr'])} "
                   "over every image and position: one of each pair is a pruning candidate.</p>"
                   '<div class="scroll"><table><thead><tr><th>a</th><th>b</th><th>corr</th><th>filter cosine</th>'
                   f"<th>a fires most on</th></tr></thead><tbody>{dups}</tbody></table></div>")
        rare = [r for r in self.atlas.kernels if r["rarely_firing"]]
        tiles = "".join(self.tile(r, 1) for r in rare)
        self.write("pages/rare.html", "Rarely firing kernels",
                   f"<p>Kernels that fire on at most {self.atlas.header['settings']['rare']:.0%} of the images "
                   f'(and are not dead): {len(rare)}.</p><div class="tiles">{tiles}</div>')
        flat = [r for r in self.atlas.kernels if _fires_on_flat(r)]
        self.write("pages/flat.html", "Kernels that need no detail of the photo",
                   f"<p>Kernels that keep ≥ {REFERENCE_KEEPS:g} of their activation at an explained site on the "
                   "reference alone, with nothing of the photo kept (a large bias, or a response to the overall "
                   f"colour): what they respond to there is not in the photo. {len(flat)} of the explained kernels "
                   f'(focus scope only).</p><div class="tiles">{"".join(self.tile(r, 1) for r in flat)}</div>')


def write_html(out: Path, atlas: Atlas) -> Path:
    """Write ``out/atlas.html`` and its pages; returns the overview's path."""
    (out / "pages").mkdir(parents=True, exist_ok=True)
    write_text(out / CSS, CSS_FILE.read_text(encoding="utf-8") + _CSS, durable=False)
    w = _Writer(out, atlas)
    w.overview()
    w.filters()
    for index, rows in w.by_layer.items():
        w.layer(index, rows)
        for row in rows:
            w.kernel(row, rows)
    return out / "atlas.html"
