"""CPU conv2d, forward and backward, and a whole CNN training step: fusednn vs
PyTorch CPU (channels_last tensors, so both read the same NHWC memory), side by
side in one process on the same inputs.

Rows:
- the lecture CNN's three convolutions at batch 64 (28x28x1 -> 32, 13x13x32 ->
  64, 5x5x64 -> 64, 3x3 'valid', relu) and two ResNet-style 3x3 'same' layers
  (56x56x64 -> 64 and 28x28x128 -> 128, batch 16, relu);
  forward = conv + bias + relu (fused in fusednn; F.conv2d then an in-place relu
  in torch, under no_grad), backward = dx, dkernel and dbias from dy through the
  relu (fusednn.ops.conv2d_backward; torch's aten threshold_backward and
  convolution_backward directly, so no autograd bookkeeping is timed);
- the lecture CNN's training step at batch 64 (Conv2D/MaxPooling2D x2, Conv2D,
  Flatten, Dense 64, Dense 10 softmax; sparse categorical cross-entropy, Adam):
  fusednn Sequential.train_on_batch vs the same torch model (channels_last)
  with zero_grad, forward, loss, backward and optimizer step.
Every library gets the same thread count (OMP_NUM_THREADS, else all cores);
warm-up, then `--repeats` interleaved rounds; medians and the ratio torch time
/ fusednn time (> 1: fusednn is faster). Results are checked to agree before
anything is timed. Every row shows its FLOP per second (conv_flops; the training
step: lecture_cnn_flops) as a fraction of the CPU's FMA peak (see limits.py).

GPU rows (--device cuda): the lecture CNN's three convolutions at batch 64 and
256 and ResNet-style 3x3 'same' layers (56x56x64, 28x28x128, 14x14x256,
7x7x512) at batch 32 and 128, forward and backward as above, fusednn on CuPy
arrays vs torch CUDA channels_last tensors (cuDNN, cudnn.benchmark on), each in
float32 (fusednn tf32=False, torch TF32 off) and TF32 (tf32=True, TF32 on).
Each is checked against torch in float32 first (relative error of the norm:
2e-4 in float32, 5e-3 with TF32's 10-bit mantissa) and shows its rate as a
fraction of the measured float32 GEMM rate in its precision (see gpu.py).

Writes <--out>/conv-cpu-<date>[-<n>threads].json and .md
(conv-<gpu>-<date>.* for the GPU rows) unless --no-write.
    python -m fusednn.bench.bench_conv [--repeats 30] [--device cuda [--quick]]
"""
from __future__ import annotations

import os

import numpy as np

from . import common, cpu, gpu, limits

from fusednn import layers, ops
import fusednn.models as models
import fusednn.utils as utils

DEVICES = ("cpu", "cuda")

# (name, (N, H, W, C), (KH, KW, F), padding)
CONVS = [
    ("lecture conv1 28x28x1 -> 26x26x32", (64, 28, 28, 1), (3, 3, 32), "valid"),
    ("lecture conv2 13x13x32 -> 11x11x64", (64, 13, 13, 32), (3, 3, 64), "valid"),
    ("lecture conv3 5x5x64 -> 3x3x64", (64, 5, 5, 64), (3, 3, 64), "valid"),
    ("resnet 3x3 56x56x64 -> 64 (same)", (16, 56, 56, 64), (3, 3, 64), "same"),
    ("resnet 3x3 28x28x128 -> 128 (same)", (16, 28, 28, 128), (3, 3, 128), "same"),
]


def gpu_convs(quick: bool) -> list:
    """The GPU rows' layers, as CONVS: lecture layers at batch 64 and 256, ResNet 3x3
    layers at batch 32 and 128 (quick: the smaller batch only)."""
    lecture = [(name, shape[1:], kernel, padding) for name, shape, kernel, padding in CONVS[:3]]
    resnet = [(f"resnet 3x3 {s}x{s}x{c} -> {c} (same)", (s, s, c), (3, 3, c), "same")
              for s, c in ((56, 64), (28, 128), (14, 256), (7, 512))]
    layers = []
    for group, batches in ((lecture, (64, 256)), (resnet, (32, 128))):
        for batch in batches[:1] if quick else batches:
            layers += [(f"{name}, batch {batch}", (batch,) + image, kernel, padding)
                       for name, image, kernel, padding in group]
    return layers


def conv_flops(x_shape, kernel_shape, y_shape) -> float:
    """Multiply-adds x 2 of one conv2d forward; the backward does twice as many."""
    KH, KW, C, _ = kernel_shape
    return 2.0 * np.prod(y_shape) * KH * KW * C


def conv_contenders(torch, x, w, b, dy, padding):
    """{pass: {library: callable}} for one layer, after checking that both agree."""
    y = ops.conv2d(x, w, b, padding=padding, activation="relu")
    grads = ops.conv2d_backward(dy, x, w, y, padding=padding, activation="relu")
    calls = {
        "forward": {"fusednn": lambda: ops.conv2d(x, w, b, padding=padding, activation="relu")},
        "backward": {"fusednn": lambda: ops.conv2d_backward(dy, x, w, y, padding=padding,
                                                            activation="relu")},
    }
    if torch is None:
        return calls
    F = torch.nn.functional
    aten = torch.ops.aten
    cl = torch.channels_last
    tx = torch.from_numpy(x).permute(0, 3, 1, 2)  # an NHWC array is a channels_last NCHW view
    tw = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous(memory_format=cl)
    tb = torch.from_numpy(b)
    tdy = torch.from_numpy(dy).permute(0, 3, 1, 2)
    pad = (w.shape[0] // 2, w.shape[1] // 2) if padding == "same" else (0, 0)

    def torch_forward():
        with torch.no_grad():
            return F.conv2d(tx, tw, tb, padding=pad).relu_()

    ty = torch_forward()
    np.testing.assert_allclose(ty.permute(0, 2, 3, 1).numpy(), y, rtol=1e-3, atol=1e-3)

    def torch_backward():
        gated = aten.threshold_backward(tdy, ty, 0)
        return aten.convolution_backward(gated, tx, tw, [w.shape[3]], [1, 1], list(pad),
                                         [1, 1], False, [0, 0], 1, [True, True, True])

    tdx, tdw, tdb = torch_backward()
    for ours, theirs in zip(grads, (tdx.permute(0, 2, 3, 1), tdw.permute(2, 3, 1, 0), tdb)):
        scale = float(np.abs(ours).max())
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-3, atol=1e-3 * scale)
    calls["forward"]["torch"] = torch_forward
    calls["backward"]["torch"] = torch_backward
    return calls


def lecture_cnn():
    """The lecture CNN in fusednn, compiled with Adam and sparse categorical cross-entropy."""
    utils.set_random_seed(0)
    model = models.Sequential([
        layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def torch_lecture_cnn(torch):
    """The same layers in torch (channels_last; the softmax is left to the loss)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(576, 64), nn.ReLU(), nn.Linear(64, 10),
    ).to(memory_format=torch.channels_last)


def training_contenders(torch, batch=64):
    rng = np.random.default_rng(0)
    x = rng.random((batch, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 10, batch)
    model = lecture_cnn()
    calls = {"fusednn": lambda: model.train_on_batch(x, labels)}
    if torch is None:
        return calls
    nn = torch.nn
    net = torch_lecture_cnn(torch)
    assert sum(p.numel() for p in net.parameters()) == model.count_params() == 93322
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    tx = torch.from_numpy(x).permute(0, 3, 1, 2)
    tlabels = torch.from_numpy(labels)

    def torch_step():
        optimizer.zero_grad()
        loss = loss_fn(net(tx), tlabels)
        loss.backward()
        optimizer.step()
        return loss

    calls["torch"] = torch_step
    return calls


def main(argv=None):
    parser = common.suite_parser(
        __doc__.split("\n\n")[0], repeats=30, warmup=3,
        quick_help="GPU rows at the smaller batch only (the CPU rows are unchanged)")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        gpu.main_or_exit(run_gpu, args)
        return

    threads, torch, info = cpu.start(args, args.no_torch)
    info["dtype"] = "float32"
    hardware = info["limits"]

    rng = np.random.default_rng(0)
    rows = []
    for name, shape, (KH, KW, F), padding in CONVS:
        x = rng.standard_normal(shape, dtype=np.float32)
        w = rng.standard_normal((KH, KW, shape[3], F), dtype=np.float32)
        w *= np.float32(1 / np.sqrt(KH * KW * shape[3]))
        b = rng.standard_normal(F, dtype=np.float32) * 0.1
        y_shape = ops.conv2d(x, w, b, padding=padding).shape
        dy = rng.standard_normal(y_shape, dtype=np.float32)
        flops = conv_flops(shape, w.shape, y_shape)
        timed = {}
        for direction, calls in conv_contenders(torch, x, w, b, dy, padding).items():
            timed[direction] = common.time_interleaved(calls, warmup=args.warmup,
                                                       repeats=args.repeats)
        for direction in ("forward", "backward", "forward+backward"):
            if direction == "forward+backward":
                median = {lib: timed["forward"][lib] + timed["backward"][lib]
                          for lib in timed["forward"]}
            else:
                median = timed[direction]
            # The backward computes two products of the forward's size (dx and dkernel).
            work = flops * {"forward": 1, "backward": 2, "forward+backward": 3}[direction]
            rows.append(make_row(name, direction, median, work, hardware))
            print(format_row(rows[-1]))

    median = common.time_interleaved(training_contenders(torch), warmup=args.warmup,
                                     repeats=args.repeats)
    rows.append(make_row("lecture CNN training step, batch 64 (Adam)", "step", median,
                         lecture_cnn_flops(64), hardware))
    print(format_row(rows[-1]))
    info["load_average_after"] = common.load_average()
    print(f"load after: {info['load_average_after']}")

    tag = "" if threads == os.cpu_count() else f"{threads}threads"
    paths = common.write_results(args, "conv-cpu", {"info": info, "results": rows},
                                 markdown(info, rows), tag)
    if paths:
        print("wrote " + ", ".join(str(p) for p in paths))


def _lecture_cnn_products(batch) -> list:
    """FLOP of each of the lecture CNN's layer products in the forward (3 Conv2D, 2 Dense)."""
    conv_layers = [((batch, 28, 28, 1), (3, 3, 1, 32), (batch, 26, 26, 32)),
                   ((batch, 13, 13, 32), (3, 3, 32, 64), (batch, 11, 11, 64)),
                   ((batch, 5, 5, 64), (3, 3, 64, 64), (batch, 3, 3, 64))]
    products = [conv_flops(*layer) for layer in conv_layers]
    return products + [2.0 * batch * 576 * 64, 2.0 * batch * 64 * 10]  # the Dense layers


def lecture_cnn_inference_flops(batch) -> float:
    """FLOP of one forward of the lecture CNN over `batch` images."""
    return sum(_lecture_cnn_products(batch))


def lecture_cnn_flops(batch) -> float:
    """FLOP of one training step of the lecture CNN: each layer's product forward, its
    weight gradient, and its data gradient except the first layer's (no one needs dx of
    the images)."""
    products = _lecture_cnn_products(batch)
    return 3 * sum(products) - products[0]


def make_row(name, direction, median, flops, hardware):
    row = {"shape": name, "pass": direction}
    for lib, seconds in median.items():
        row[f"{lib}_ms"] = seconds * 1e3
        row[f"{lib}_gflops"] = flops / seconds / 1e9
    if "torch" in median:
        row["torch_over_fusednn"] = median["torch"] / median["fusednn"]
    return limits.fill(row, median, hardware, flops=flops)


def format_row(row):
    text = f"{row['shape']:44s} {row['pass']:16s} fusednn {row['fusednn_ms']:9.3f} ms"
    if "torch_ms" in row:
        text += f"  torch {row['torch_ms']:9.3f} ms  x{row['torch_over_fusednn']:.2f}"
    return text + f"  ({common.percent(row['fusednn_fraction'])} of {row['ceiling']})"


def markdown(info, rows):
    has_torch = any("torch_ms" in r for r in rows)
    header = ["layer", "pass", "fusednn ms"] + (["torch ms", "torch / fusednn"] if has_torch
                                                 else [])
    header += ["fusednn of limit", "torch of limit", "limit"]
    table = []
    for r in rows:
        line = [r["shape"], r["pass"], f"{r['fusednn_ms']:.3f}"]
        if has_torch:
            line += [f"{r['torch_ms']:.3f}", f"{r['torch_over_fusednn']:.2f}"]
        table.append(line + common.fraction_cells(r))
    return (f"# CPU conv2d and CNN training step\n\n{info['cpu']} ({info['cpu_simd']}), "
            f"{info['threads']} threads; torch {info.get('torch')} (channels_last). float32. "
            f"Load average before {info['load_average_before']}, after "
            f"{info['load_average_after']}. Median of {info['repeats']} interleaved repeats. "
            "Ratio = torch time / fusednn time (> 1: fusednn is faster). "
            f"{limits.describe(info['limits'])}\n\n" + common.markdown_table(header, table))


# ----- GPU rows -------------------------------------------------------------------
# Relative error of the norm against torch in float32. float32: dkernel sums up to
# 128*56*56 = 4e5 products, whose rounding grows like eps * sqrt(n / 2) = 3e-5 for a
# sequential sum; TF32 rounds each operand to 10 mantissa bits (2^-11 = 5e-4).
TOLERANCE = {"fp32": 2e-4, "tf32": 5e-3}


def gpu_conv_rows(cp, torch, x, w, b, dy, padding, name, args, flush, ceiling):
    """Forward, backward and forward+backward rows of one layer in float32 and TF32."""
    F = torch.nn.functional
    aten = torch.ops.aten
    cx, cw, cb, cdy = (cp.asarray(a) for a in (x, w, b, dy))
    # An NHWC tensor is a channels_last NCHW view; the kernel goes to (F, C, KH, KW).
    tx = gpu.torch_copy(torch, x).permute(0, 3, 1, 2)
    tw = gpu.torch_copy(torch, w).permute(3, 2, 0, 1).contiguous(
        memory_format=torch.channels_last)
    tb, tdy = gpu.torch_copy(torch, b), gpu.torch_copy(torch, dy).permute(0, 3, 1, 2)
    pad = (w.shape[0] // 2, w.shape[1] // 2) if padding == "same" else (0, 0)

    def torch_forward():
        with torch.no_grad():
            return F.conv2d(tx, tw, tb, padding=pad).relu_()

    def torch_backward(ty):
        gated = aten.threshold_backward(tdy, ty, 0)
        return aten.convolution_backward(gated, tx, tw, [w.shape[3]], [1, 1], list(pad),
                                         [1, 1], False, [0, 0], 1, [True, True, True])

    def host(tensors):  # torch (NCHW views, F C KH KW kernel) -> fusednn's layouts
        tdx, tdw, tdb = tensors
        return (tdx.permute(0, 2, 3, 1).cpu().numpy(), tdw.permute(2, 3, 1, 0).cpu().numpy(),
                tdb.cpu().numpy())

    gpu.set_tf32(torch, False)
    reference_y = torch_forward()
    reference = {"y": reference_y.permute(0, 2, 3, 1).cpu().numpy(),
                 "grads": host(torch_backward(reference_y))}
    flops = conv_flops(x.shape, w.shape, dy.shape)
    rows = []
    for precision in ("fp32", "tf32"):
        tf32 = precision == "tf32"
        gpu.set_tf32(torch, tf32)
        ty = torch_forward()
        y = ops.conv2d(cx, cw, cb, padding=padding, activation="relu", tf32=tf32)

        def forward_pair():
            check = lambda: gpu.check_close(  # noqa: E731
                {"y": (cp.asnumpy(y), reference["y"])}, TOLERANCE[precision])
            return {"fusednn": lambda: ops.conv2d(cx, cw, cb, padding=padding,
                                                  activation="relu", tf32=tf32),
                    "torch": torch_forward}, check

        def backward_pair():
            def ours():
                return ops.conv2d_backward(cdy, cx, cw, y, padding=padding, activation="relu",
                                           tf32=tf32)

            def check():
                grads = [cp.asnumpy(g) for g in ours()]
                return gpu.check_close({n: (g, r) for n, g, r in
                                        zip(("dx", "dkernel", "dbias"), grads,
                                            reference["grads"])}, TOLERANCE[precision])
            return {"fusednn": ours, "torch": lambda: torch_backward(ty)}, check

        timed = {}
        for direction, make, work in (("forward", forward_pair, flops),
                                      ("backward", backward_pair, 2 * flops)):
            row = {"name": name, "pass": f"{direction} {precision}", "precision": precision}
            rows.append(gpu.measure_row(row, make, warmup=args.warmup, repeats=args.repeats,
                                        flush=flush, flops=work, precision=precision,
                                        ceiling=ceiling))
            timed[direction] = row
            print(gpu.format_row(row), flush=True)
        if not any("error" in r for r in timed.values()):
            median = {lib: (timed["forward"][f"{lib}_ms"] + timed["backward"][f"{lib}_ms"]) / 1e3
                      for lib in ("fusednn", "torch")}
            row = {"name": name, "pass": f"forward+backward {precision}", "precision": precision,
                   "check": "see forward, backward"}
            rows.append(gpu.fill_times(row, median, flops=3 * flops, precision=precision,
                                       ceiling=ceiling))
            print(gpu.format_row(row), flush=True)
    return rows


def run_gpu(cp, torch, args) -> int:
    torch.backends.cudnn.benchmark = True  # cuDNN at its best: the fastest algorithm per shape
    info = gpu.start(cp, torch, args, "float32 (TF32 off) and TF32 rows, fusednn tf32 flag "
                                      "matching torch's fp32_precision")
    flush = gpu.l2_flush(cp)
    rng = np.random.default_rng(0)
    rows = []
    for name, shape, (KH, KW, F), padding in gpu_convs(args.quick):
        x = rng.standard_normal(shape, dtype=np.float32)
        w = rng.standard_normal((KH, KW, shape[3], F), dtype=np.float32)
        w *= np.float32(1 / np.sqrt(KH * KW * shape[3]))
        b = rng.standard_normal(F, dtype=np.float32) * 0.1
        y_shape = ops.conv2d(x[:1], w, b, padding=padding).shape
        dy = rng.standard_normal((shape[0],) + y_shape[1:], dtype=np.float32)
        rows += gpu_conv_rows(cp, torch, x, w, b, dy, padding, name, args, flush,
                              info["ceilings"])
    return gpu.report("conv", "GPU conv2d: fusednn vs cuDNN (torch channels_last)", info, rows,
                      args)


if __name__ == "__main__":
    main()
