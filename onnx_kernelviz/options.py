"""String options with a closed set of values, as ``Literal`` types shared by every stage (and the CLI's choices).

Options whose values can be extended (methods, mask parameterizations, references, baselines, presets) are
registries instead (``registry.Registry``), checked when they are looked up.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["Layout", "LAYOUTS", "Fit", "FITS", "DeviceName", "DEVICES", "Status", "STATUSES", "Scope", "SCOPES"]

#: the model input's memory layout
Layout = Literal["nchw", "nhwc"]
LAYOUTS: tuple[str, ...] = get_args(Layout)

#: how a picture of other proportions fits the input (``--fit``; io/modelinput.py says how each works)
Fit = Literal["crop", "squash", "pad"]
FITS: tuple[str, ...] = get_args(Fit)

#: where to optimize: ``auto`` is CUDA when torch sees a GPU
DeviceName = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(DeviceName)

#: what an explanation explains (docs/CONTRACT.md, "Local explanations"): kernel k at its peak (the focus cells and
#: their receptive field) or its whole activation map
Scope = Literal["focus", "map"]
SCOPES: tuple[str, ...] = get_args(Scope)

#: a result's status (docs/CONTRACT.md): explained, nothing to explain (‖r_k(x)‖ = 0), or failed with a reason
Status = Literal["ok", "inactive", "failed"]
STATUSES: tuple[str, ...] = get_args(Status)
