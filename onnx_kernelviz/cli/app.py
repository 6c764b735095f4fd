"""The ``kernelviz`` group and what every command shares: one-line errors, --debug, preprocessing options.

Each command parses options, calls the API and prints. Domain errors become one ``Error: ...`` line with exit
status 1 (2 for usage errors); ``--debug`` shows the traceback instead. Ctrl-C (exit 130) and SIGTERM (exit 143)
keep every finished result. Names from files (paths, node names) are printed through :func:`shown`, so a name
cannot forge a second line or send escape sequences to the terminal.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import sys
import threading
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from onnx_kernelviz import __version__
from onnx_kernelviz.errors import KernelvizError, ModelError
from onnx_kernelviz.options import DEVICES, FITS, LAYOUTS

if TYPE_CHECKING:  # imported lazily at run time: `kernelviz --help` must not wait for torch
    from onnx_kernelviz.io.preprocess import Preprocess
    from onnx_kernelviz.model import Model

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class _Fail(click.ClickException):
    """A one-line ``Error: ...`` with exit status 1."""


class _UsageFail(_Fail):
    """A one-line ``Error: ...`` with exit status 2 (the contract's usage errors)."""

    exit_code = 2


def _fail(message: str, exit_code: int) -> _Fail:
    return _UsageFail(message) if exit_code == 2 else _Fail(message)


def shown(text: str) -> str:
    """``text`` safe for one terminal line: control and format characters (newlines, ESC, bidi overrides), line
    separators and lone surrogates (file names that are not valid UTF-8) become backslash escapes, as in repr."""
    out = []
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def count(n: int, noun: str) -> str:
    """``1 layer``, ``2 layers``: a summary line's counts."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so that every ``finally`` saves the finished work the same way."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def _debug_enabled() -> bool:
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().meta.get("kernelviz.debug"):
        return True
    return os.environ.get("KERNELVIZ_DEBUG", "") not in ("", "0")


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    # Kept in the click context, not os.environ: an in-process caller (CliRunner, scripts) must not find
    # --debug still on in its next invocation.
    if value:
        ctx.find_root().meta["kernelviz.debug"] = True


class GivenPath(click.Path):
    """``click.Path`` that refuses an empty string: pathlib reads ``""`` as ``"."``, so ``--out "$OUT"`` with OUT
    unset wrote into the current folder (with --force over its report.html and results.json)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value == "":
            self.fail("an empty path; give a file or folder (is a shell variable unset?)", param, ctx)
        return super().convert(value, param, ctx)


def _device_option(where: str) -> Callable[[F], F]:
    """``--device``, its help starting with ``where`` (what runs there)."""
    return click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                        help=f"{where}: auto is CUDA when torch sees a GPU.")


device_option = _device_option("Where to optimize")


def device_option_for(what: str) -> Callable[[F], F]:
    """``--device`` for a command that does not (only) optimize: its help says what runs there."""
    return _device_option(f"Where {what} run")

debug_option = click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                            help="Show Python tracebacks instead of one-line errors.")


def _friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn exceptions into the contract's one-line errors (unless --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _on_sigterm) if main else None
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt as e:
            if _debug_enabled():
                raise
            what, code = ("Terminated", 143) if isinstance(e, Terminated) else ("Interrupted", 130)
            click.echo(f"\n{what}: {_after_stop()}.", err=True)
            sys.exit(code)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # `kernelviz inspect m.onnx | head`: the reader left; that is not an error worth a message
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except KernelvizError as e:
            if _debug_enabled():
                raise
            raise _fail(shown(str(e)), e.exit_code) from None
        except MemoryError:
            if _debug_enabled():
                raise
            raise _Fail(f"out of memory; {_memory_advice()}") from None
        except Exception as e:  # noqa: BLE001 - the contract: never a traceback without --debug
            if _debug_enabled():
                raise
            if isinstance(e, OSError) and e.errno in _NO_ROOM:
                raise _Fail(shown(_no_room(e))) from None
            raise _Fail(shown(f"unexpected {type(e).__name__}: {str(e)[:300]}; rerun with --debug for the "
                              "traceback and please report it")) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


#: errors that only a write raises and a user can fix (make room, or another --out): not a bug to report
_NO_ROOM = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
            errno.EROFS: "the file system is read-only"}


def _no_room(e: OSError) -> str:
    """One line for a full or read-only disk met while writing (the atlas's checkpoints and pages, diff.json,
    report.html, ...). Each file is written atomically, so the files there before are intact."""
    where = e.filename or "into --out"  # a failed write() names no file, only open() and mkstemp() do
    return f"cannot write {where}: {_NO_ROOM[e.errno or 0]}; make room or choose another --out; {_after_stop()}"


def _after_stop() -> str:
    """How to go on after the running command stopped early (Ctrl-C, SIGTERM, a full disk): only ``explain`` and
    ``atlas`` have --resume; pointing ``diff`` or ``compare`` there sent users to an option that does not exist."""
    ctx = click.get_current_context(silent=True)
    names = {p.name for p in ctx.command.params} if ctx is not None else set()
    if "resume" in names:
        return "finished results were kept (resume with --resume)"
    if "force" in names:
        return "run it again with --force (this command cannot resume; its --out may hold partial files)"
    return "run it again"


def _memory_advice() -> str:
    """What the running command lets a user do about memory (``inspect`` has no --batch-size). ``--size`` only
    once a model whose input has a free side is open (:func:`_open`): the fixed sides override it, and it does not
    help to load a model."""
    ctx = click.get_current_context(silent=True)
    names = {p.name for p in ctx.command.params} if ctx is not None else set()
    if ctx is None or not ctx.meta.get(_SIZE_FREE):
        names.discard("size")
    options = [o for o, n in (("--batch-size", "batch_size"), ("--size", "size")) if n in names]
    if options:
        return f"use a smaller {' or '.join(options)}, or close other programs"
    return "close other programs or use a machine with more memory"


#: click context meta: the opened model's input has a free side, so --size sets its input size; and no --size
#: (nor sidecar or preset) gave one, so kernelviz chose it
_SIZE_FREE, _SIZE_CHOSEN = "kernelviz.size_free", "kernelviz.size_chosen"


def size_hint() -> str:
    """Words to add where the terminal names the input size the images were fitted to, when kernelviz chose that
    size for a model with free sides (frontend/inputsize.py: 224, or the images' proportions): that ``--size``
    sets it. Empty otherwise (a fixed input, or a size that was given)."""
    ctx = click.get_current_context(silent=True)
    return "; --size HxW sets the input size" if ctx is not None and ctx.meta.get(_SIZE_CHOSEN) else ""


def preprocess_options(fn: F) -> F:
    """--size/--mean/--std/--scale/--bgr/--layout/--preset/--fit/--input, shared by every command that reads
    images."""
    opts = [
        click.option("--size", help="Model input size HxW (e.g. 224x224) for models with dynamic H/W."),
        click.option("--mean", help="Per-channel mean, e.g. 0.485,0.456,0.406 (after --scale)."),
        click.option("--std", help="Per-channel std, e.g. 0.229,0.224,0.225."),
        click.option("--scale/--no-scale", default=None, help="Divide pixels by 255 before mean/std (default on)."),
        click.option("--bgr/--rgb", "bgr", default=None, help="Channel order the model expects (default RGB)."),
        click.option("--layout", type=click.Choice(LAYOUTS), default=None,
                     help="Model input layout (auto-detected)."),
        click.option("--preset", help="Preprocessing preset: imagenet, raw, unit, tf, caffe, ..."),
        click.option("--fit", type=click.Choice(FITS), default=None,
                     help="Photos of other proportions: crop = resize the shorter side and take the centre "
                          "(default), squash = stretch to the input size, pad = whole photo with mean-colour bands."),
        click.option("--input", "input_name", help="The image input, for models with several inputs."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def _open(model: str, device: str, kw: dict[str, Any]) -> tuple[Model, Preprocess]:
    """Resolve preprocessing (CLI > preset > sidecar > imagenet) and open the model."""
    from onnx_kernelviz.io.sidecar import resolve_preprocess
    from onnx_kernelviz.model import Model

    if not Path(model).exists():
        raise KernelvizError(f"model file {model} does not exist; check the path")
    size_given = kw.get("size") is not None
    pp = resolve_preprocess(model, preset=kw.pop("preset"),
                            overrides={k: kw.pop(k) for k in ("size", "mean", "std", "scale", "bgr", "layout", "fit")})
    m = _with_convs(Model(model, device=device, input_name=kw.pop("input_name"), layout=pp.layout))
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[_SIZE_FREE] = not (m.loaded.input.height and m.loaded.input.width)
        ctx.meta[_SIZE_CHOSEN] = ctx.meta[_SIZE_FREE] and pp.size is None
    if size_given:
        _note_size_against_fixed_sides(m, pp.size)
    return m, pp


def _note_size_against_fixed_sides(m: Model, size: tuple[int, int] | None) -> None:
    """Say so on stderr when the model's fixed sides override a ``--size`` (frontend/inputsize.py: the fixed sides
    win), so a run does not use another input size than the one asked for without a word. A note, not an error:
    scripts that pass one --size to many models kept working. Only the command line's --size is checked: a
    sidecar's or preset's describes the model and may repeat its fixed sides."""
    info = m.loaded.input
    if size is None:
        return
    if (info.height and size[0] != info.height) or (info.width and size[1] != info.width):
        free = "" if info.height and info.width else ", ? = free"
        fixed = f"{info.height or '?'}x{info.width or '?'} (HxW{free})"
        click.echo(shown(f"Note: --size {size[0]}x{size[1]} does not fit {m.path}, whose input is fixed at {fixed}; "
                         "the fixed sides are used (--size sets only the free ones)"), err=True)


def _with_convs(m: Model) -> Model:
    """A model without any Conv is a model problem (exit 1), not a bad --layer: say so before anything runs."""
    if not m.layers:
        if any(n.domain == "com.microsoft.nchwc" for n in m.graph.nodes):
            # onnxruntime's ORT_ENABLE_ALL layout ops: tied to the CPU that saved them, and not convertible
            raise ModelError(f"{m.path} was saved after onnxruntime's graph optimizations for one CPU "
                             "(com.microsoft.nchwc Conv ops); use the model from before those optimizations, or "
                             "save it at ORT_ENABLE_EXTENDED, whose FusedConv nodes kernelviz reads")
        raise ModelError(f"{m.path} has no Conv layers; kernelviz explains convolution kernels of CNNs")
    return m


class _Group(click.Group):
    """click's own usage errors (a bad option value, a missing file) quote what was typed: shown() keeps a name
    with a newline from forging a second ``Error:`` line there too."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            return super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as e:
            setattr(e, "message", shown(e.message))  # noqa: B010 - click declares it Final
            e.show()
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="kernelviz")
@debug_option
def cli() -> None:
    """Show what one convolution kernel of a CNN responds to, from its ONNX file.

    \b
    Start with:  kernelviz demo
    Then:        kernelviz inspect model.onnx
                 kernelviz explain model.onnx photo.jpg --layer 20 --kernel top3 --out out/
    """


def main() -> None:
    cli(prog_name="kernelviz")
