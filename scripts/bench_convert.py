"""Time the front end on the test corpus: load, normalize, convert (onnx2torch), and the worst parity.

    python scripts/bench_convert.py                       # every corpus model (exports take a few minutes)
    python scripts/bench_convert.py --models resnet18 opset7 default
    python scripts/bench_convert.py --models traps        # only the tiny graphs
    python scripts/bench_convert.py --models deployed default-builds   # int8/fp16 builds, odd shapes

Prints one markdown table. ``--models`` takes torchvision names (both exporters, plus ``legacy11`` where the
corpus has it), trap names from ``tests/corpus.py``, ``traps``, ``torchvision`` and ``default``; from
``tests/corpus_deployed.py``: build kinds (``qdq``, ``qoperator``, ``dynamic``, ``fp16``: of the tiny float net),
shape entries (``text_recognizer``, ``same_padding``, ...), ``deployed`` (all of those) and ``default-builds``
(the default model quantized and converted to fp16 with onnxruntime's tools). The worst parity is relative, or in
quantization steps for int8 models (``measure/tolerance.py``).
Exports are cached in ``--cache`` (a temporary folder by default).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import corpus  # noqa: E402
import corpus_deployed  # noqa: E402

from onnx_kernelviz.measure.verify import verify_model  # noqa: E402
from onnx_kernelviz.model import Model  # noqa: E402


def _entries(names: list[str], cache: Path) -> list[tuple[str, str, Callable[[], Path]]]:
    """(model, exporter, make_path) for each requested name, in corpus order."""
    out = []
    for name in names:
        if name == "traps":
            out += _entries(list(corpus.TRAPS), cache)
        elif name == "torchvision":
            out += _entries(list(corpus.TORCHVISION), cache)
        elif name == "default":
            out.append(("efficientnet_lite0 (default)", "legacy (shipped)", lambda: corpus.DEFAULT_MODEL))
        elif name in corpus.TORCHVISION:
            for n, e in corpus.TORCHVISION_RUNS:
                if n == name:
                    out.append((n, e, lambda n=n, e=e: corpus.export_torchvision(n, e, cache)))
        elif name in corpus.TRAPS:
            out.append((name, "onnx.helper", lambda n=name: corpus.save(corpus.TRAPS[n].build(), cache / f"{n}.onnx")))
        elif name == "deployed":
            out += _entries([*corpus_deployed.KINDS, *corpus_deployed.SHAPES], cache)
        elif name == "default-builds":
            for kind in corpus_deployed.KINDS:
                out.append(("efficientnet_lite0 (default)", f"onnxruntime {kind}",
                            lambda k=kind: corpus_deployed.quantize_model(
                                corpus.DEFAULT_MODEL, cache / f"default_{k}.onnx", k, size=(224, 224))))
        elif name in corpus_deployed.KINDS:
            out.append((f"tiny_float -> {name}", f"onnxruntime {name}",
                        lambda n=name: corpus_deployed.build(n, cache)))
        elif name in corpus_deployed.SHAPES:
            out.append((name, "onnx.helper", lambda n=name: corpus_deployed.save(corpus_deployed.SHAPES[n].build(),
                                                                                cache / f"{n}.onnx")))
        else:
            raise SystemExit(f"unknown model {name!r}; choose from: traps, torchvision, default, deployed, "
                             f"default-builds, {', '.join(corpus.TORCHVISION)}, {', '.join(corpus.TRAPS)}, "
                             f"{', '.join(corpus_deployed.KINDS)}, {', '.join(corpus_deployed.SHAPES)}")
    return out


def bench(model: str, exporter: str, path: Path) -> str:
    t0 = time.perf_counter()
    m = Model(path)
    t1 = time.perf_counter()
    m.normalized  # noqa: B018 - the cached property runs normalize
    t2 = time.perf_counter()
    m.torch_graph(tuple(dict.fromkeys(la.tensor for la in m.layers)))
    t3 = time.perf_counter()
    report = verify_model(m)
    if report.rule.precision == "int8":
        worst = f"{max(la.parity_steps for la in report.layers):.0f} steps"
    else:
        worst = f"{max(la.parity_rel for la in report.layers):.1e}"
    return (f"| {model} | {exporter} | {m.loaded.opset} | {len(m.layers)} | {t1 - t0:.2f} | {t2 - t1:.2f} | "
            f"{t3 - t2:.2f} | {t3 - t0:.2f} | {worst}{'' if report.ok else ' FAIL'} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["torchvision", "default", "traps", "deployed",
                                                        "default-builds"],
                        help="torchvision names, trap names, 'traps', 'torchvision', 'default', 'deployed', "
                             "'default-builds', build kinds and shape entries of tests/corpus_deployed.py")
    parser.add_argument("--cache", type=Path, default=None, help="folder for the exported models")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    cache = args.cache or Path(tempfile.mkdtemp(prefix="kernelviz-bench-"))
    cache.mkdir(parents=True, exist_ok=True)
    print("| model | exporter | opset | convs | load s | normalize s | convert s | total s | worst parity |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model, exporter, make in _entries(args.models, cache):
        try:
            print(bench(model, exporter, Path(make())), flush=True)
        except Exception as e:  # noqa: BLE001 - one failing model must not hide the others
            print(f"| {model} | {exporter} | | | | | | | ERROR {type(e).__name__}: {str(e)[:80]} |", flush=True)


if __name__ == "__main__":
    main()
