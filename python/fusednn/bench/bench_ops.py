"""fusednn CPU ops vs PyTorch CPU, side by side in one process on the same inputs.

- Softmax cross-entropy, forward + backward: fusednn.ops.sparse_softmax_cross_entropy
  (and softmax_cross_entropy with probability targets), which returns the
  per-row losses and dlogits in one pass, against F.cross_entropy(...).backward()
  on a leaf tensor (mean reduction; its gradient is the same dlogits).
- Optimizer step over a list of float32 tensors: fusednn.ops.adam_update vs
  torch.optim.Adam(foreach=True) (and fused=True where this torch has it), and
  fusednn.ops.sgd_update vs torch.optim.SGD(momentum=0.9, foreach=True).

Both libraries get the same thread count (OMP_NUM_THREADS, else all cores).
Warm-up, then --repeats interleaved rounds; medians are reported with the
ratio torch / fusednn (above 1: fusednn is faster). Every row shows the bytes
the op must move per second as a fraction of the measured copy bandwidth (see
limits.py): cross-entropy as for the GPU rows (ce_bytes), optimizer steps
28 bytes per float32 parameter for Adam (read p, g, m, v and write p, m, v),
20 for SGD with momentum.

GPU rows (--device cuda): the same ops on CuPy arrays against torch CUDA tensors,
with larger cross-entropy problems and a 100M-parameter model, against
torch.optim.Adam(fused=True) and (foreach=True); each op is checked against
torch first (one optimizer step from the same state: torch's epsilon is
rescaled there to Keras's placement) and shown as a fraction of the measured
copy bandwidth for the bytes it must move (cross-entropy: logits read and
dlogits written, plus targets or labels and the losses).

Writes <--out>/ops-cpu-<date>[-<tag>].json and .md (ops-<gpu>-<date>.* for the
GPU rows) unless --no-write.
    [OMP_NUM_THREADS=1] python -m fusednn.bench.bench_ops [--repeats 30] [--quick] [--tag 1thread]
    python -m fusednn.bench.bench_ops --device cuda [--quick]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from . import common, cpu, gpu, limits
from .common import load_average, markdown_table, time_interleaved

import fusednn.ops as ops

DEVICES = ("cpu", "cuda")

CE_SHAPES = [(8192, 10), (2048, 1000), (256, 32000)]

# Parameter shapes of a ~1M-parameter MLP (784-1024-192-10), a ~10M one
# (2048-2048-2048-512-1000 style), and 1M parameters spread over 200 tensors.
OPTIMIZER_MODELS = {
    "1.0M params, 6 tensors": [(784, 1024), (1024,), (1024, 192), (192,), (192, 10), (10,)],
    "10.0M params, 8 tensors": [(2048, 2048), (2048,), (2048, 2048), (2048,), (2048, 512), (512,),
                                (512, 1000), (1000,)],
    "1.0M params, 200 tensors": [(5000,)] * 200,
}


def ce_rows(torch, rng, repeats, quick, hardware):
    F = torch.nn.functional
    rows = []
    shapes = CE_SHAPES[:1] if quick else CE_SHAPES
    for N, C in shapes:
        logits = rng.standard_normal((N, C)).astype(np.float32) * 3
        labels = rng.integers(0, C, size=N)
        targets = rng.dirichlet(np.ones(C), size=N).astype(np.float32)
        t_logits = torch.from_numpy(logits.copy()).requires_grad_()
        t_labels = torch.from_numpy(labels)
        t_targets = torch.from_numpy(targets)

        def torch_step(y):
            def run():
                t_logits.grad = None
                F.cross_entropy(t_logits, y).backward()
            return run

        for kind, fused, y in [("sparse labels", lambda: ops.sparse_softmax_cross_entropy(logits, labels), t_labels),
                               ("probability targets", lambda: ops.softmax_cross_entropy(logits, targets), t_targets)]:
            times = time_interleaved({"fusednn": fused, "torch": torch_step(y)},
                                     warmup=3, repeats=repeats)
            row = {"op": f"softmax CE fwd+bwd, {kind}", "shape": f"N={N}, C={C}",
                   "fusednn_ms": times["fusednn"] * 1e3, "torch_ms": times["torch"] * 1e3,
                   "ratio": times["torch"] / times["fusednn"]}
            rows.append(limits.fill(row, times, hardware, bytes_moved=ce_bytes(N, C, kind)))
    return rows


def optimizer_rows(torch, rng, repeats, quick, hardware):
    rows = []
    models = dict(list(OPTIMIZER_MODELS.items())[:1]) if quick else OPTIMIZER_MODELS
    for model, shapes in models.items():
        params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        grads = [rng.standard_normal(s).astype(np.float32) * 1e-2 for s in shapes]
        total = sum(p.size for p in params)

        ms = [np.zeros_like(p) for p in params]
        vs = [np.zeros_like(p) for p in params]
        step = [0]

        def fusednn_adam():
            step[0] += 1
            ops.adam_update(params, grads, ms, vs, learning_rate=1e-3, beta_1=0.9,
                            beta_2=0.999, epsilon=1e-7, step=step[0])

        moments = [np.zeros_like(p) for p in params]

        def fusednn_sgd():
            ops.sgd_update(params, grads, moments, learning_rate=1e-3, momentum=0.9)

        def torch_optimizer(cls, **kwargs):
            t_params = [torch.from_numpy(p.copy()) for p in params]
            for tp, g in zip(t_params, grads):
                tp.grad = torch.from_numpy(g)
            try:
                return cls(t_params, lr=1e-3, **kwargs).step
            except (RuntimeError, TypeError, ValueError):  # e.g. no fused CPU kernel
                return None

        adam = {"fusednn": fusednn_adam,
                "torch foreach": torch_optimizer(torch.optim.Adam, eps=1e-7, foreach=True)}
        fused = torch_optimizer(torch.optim.Adam, eps=1e-7, fused=True)
        if fused is not None:
            try:
                fused()
                adam["torch fused"] = fused
            except RuntimeError:
                pass
        sgd = {"fusednn": fusednn_sgd,
               "torch foreach": torch_optimizer(torch.optim.SGD, momentum=0.9, foreach=True)}
        for op, contenders, bytes_per_param in [("Adam step", adam, 28), ("SGD momentum step", sgd, 20)]:
            times = time_interleaved(contenders, warmup=3, repeats=repeats)
            row = {"op": op, "shape": model, "fusednn_ms": times["fusednn"] * 1e3,
                   "torch_ms": times["torch foreach"] * 1e3,
                   "ratio": times["torch foreach"] / times["fusednn"]}
            if "torch fused" in times:
                row["torch_fused_ms"] = times["torch fused"] * 1e3
                row["ratio_fused"] = times["torch fused"] / times["fusednn"]
            # The foreach optimizer is the torch column; its fraction is torch's.
            times["torch"] = times.pop("torch foreach")
            rows.append(limits.fill(row, times, hardware, bytes_moved=bytes_per_param * total))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="one size per op (a smoke run)")
    parser.add_argument("--tag", default="", help="suffix of the result files, e.g. 1thread")
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument("--warmup", type=int, default=3)
    common.add_run_options(parser)
    args = parser.parse_args(argv)
    if args.device == "cuda":
        gpu.main_or_exit(run_gpu, args)
        return

    _, torch, info = cpu.start(args)
    if torch is None:
        sys.exit("bench_ops needs PyTorch (pip install torch) as the reference")
    hardware = info["limits"]
    rng = np.random.default_rng(0)
    rows = ce_rows(torch, rng, args.repeats, args.quick, hardware) + \
        optimizer_rows(torch, rng, args.repeats, args.quick, hardware)
    info["load_average_after"] = load_average()

    header = ["op", "shape", "fusednn ms", "torch ms", "torch / fusednn", "torch fused ms",
              "torch fused / fusednn", "fusednn of limit", "torch of limit", "limit"]
    table = [[r["op"], r["shape"], f"{r['fusednn_ms']:.3f}", f"{r['torch_ms']:.3f}",
              f"{r['ratio']:.2f}x",
              f"{r['torch_fused_ms']:.3f}" if "torch_fused_ms" in r else "",
              f"{r['ratio_fused']:.2f}x" if "ratio_fused" in r else ""]
             + common.fraction_cells(r) for r in rows]
    md = (f"# fusednn CPU ops vs PyTorch CPU\n\n{info['cpu']} ({info['cpu_simd']}), "
          f"{info['logical_cores']} logical cores, {info['threads']} threads; torch "
          f"{info['torch']}; median of {args.repeats} interleaved rounds; load average "
          f"{info['load_average_before']} before, {info['load_average_after']} after. "
          f"{limits.describe(hardware)} "
          "Torch's fraction is its foreach optimizer's.\n\n" + markdown_table(header, table))
    print(md)
    for path in common.write_results(args, "ops-cpu", {"info": info, "results": rows}, md,
                                     tag=args.tag):
        print(f"wrote {path}")


# ----- GPU rows -------------------------------------------------------------------
GPU_CE_SHAPES = [(8192, 10), (2048, 1000), (256, 32000), (65536, 1000), (8192, 32000)]
GPU_OPTIMIZER_MODELS = {
    "10.0M params, 8 tensors": OPTIMIZER_MODELS["10.0M params, 8 tensors"],
    "100.7M params, 12 tensors": [(4096, 4096), (4096,)] * 6,
    "1.0M params, 200 tensors": OPTIMIZER_MODELS["1.0M params, 200 tensors"],
}
BETA_1, BETA_2, EPSILON, LEARNING_RATE = 0.9, 0.999, 1e-7, 1e-3


def ce_bytes(N, C, kind) -> int:
    """float32 logits read and dlogits written, the losses written, and int64 labels or
    float32 targets read."""
    targets = 8 * N if kind == "sparse labels" else 4 * N * C
    return 4 * N * C * 2 + 4 * N + targets


def gpu_ce_rows(cp, torch, args, flush, ceiling):
    """Inputs drawn on the device (a 1 GB problem takes seconds to draw on the host):
    logits ~ 3 N(0, 1), uniform labels, targets the softmax of N(0, 1) rows."""
    F = torch.nn.functional
    device = gpu.TORCH_DEVICE
    generator = torch.Generator(device=device).manual_seed(0)
    rows = []
    shapes = [GPU_CE_SHAPES[1], GPU_CE_SHAPES[3]] if args.quick else GPU_CE_SHAPES
    for N, C in shapes:
        t_logits = (3 * torch.randn(N, C, device=device, generator=generator)).requires_grad_()
        t_labels = torch.randint(0, C, (N,), device=device, generator=generator)
        t_targets = torch.softmax(torch.randn(N, C, device=device, generator=generator), dim=1)
        # CuPy views of torch's memory: neither library writes its inputs.
        c_logits, c_labels, c_targets = (cp.from_dlpack(t.detach())
                                         for t in (t_logits, t_labels, t_targets))
        for kind, fused, y in [
                ("sparse labels", lambda: ops.sparse_softmax_cross_entropy(c_logits, c_labels),
                 t_labels),
                ("probability targets", lambda: ops.softmax_cross_entropy(c_logits, c_targets),
                 t_targets)]:
            def theirs():
                t_logits.grad = None
                loss = F.cross_entropy(t_logits, y)
                loss.backward()
                return loss

            def make():
                def check():
                    losses, dlogits = fused()
                    loss = theirs()
                    return gpu.check_close({
                        "mean loss": (cp.asnumpy(losses.mean()), loss.detach().cpu().numpy()),
                        "dlogits": (cp.asnumpy(dlogits), t_logits.grad.cpu().numpy())}, 1e-5)
                return {"fusednn": fused, "torch": theirs}, check

            row = {"name": f"softmax CE fwd+bwd, {kind}", "pass": f"N={N}, C={C}"}
            rows.append(gpu.measure_row(row, make, warmup=args.warmup, repeats=args.repeats,
                                        flush=flush, bytes_moved=ce_bytes(N, C, kind),
                                        ceiling=ceiling))
            print(gpu.format_row(rows[-1]), flush=True)
    return rows


def gpu_optimizer_rows(cp, torch, rng, args, flush, ceiling):
    rows = []
    models = dict(list(GPU_OPTIMIZER_MODELS.items())[:2]) if args.quick else GPU_OPTIMIZER_MODELS
    for model, shapes in models.items():
        params = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        grads = [rng.standard_normal(s, dtype=np.float32) * np.float32(1e-2) for s in shapes]
        total = sum(p.size for p in params)
        for op, bytes_per_param in (("Adam step", 28), ("SGD momentum step", 20)):
            row = {"name": op, "pass": model, "params": total}
            make = optimizer_pair(cp, torch, op, params, grads)
            rows.append(gpu.measure_row(row, make, warmup=args.warmup, repeats=args.repeats,
                                        flush=flush, bytes_moved=bytes_per_param * total,
                                        ceiling=ceiling))
            print(gpu.format_row(rows[-1]), flush=True)
    return rows


def optimizer_pair(cp, torch, op, params, grads):
    """make() for gpu.measure_row: fusednn and torch (fused and foreach) stepping their own
    copies of params; the check compares one step from the same state."""
    adam = op == "Adam step"

    def fusednn_step():
        c_params = [cp.asarray(p) for p in params]
        c_grads = [cp.asarray(g) for g in grads]
        state = [[cp.zeros_like(p) for p in c_params] for _ in range(2 if adam else 1)]
        step = [0]

        def run():
            step[0] += 1
            if adam:
                ops.adam_update(c_params, c_grads, *state, learning_rate=LEARNING_RATE,
                                beta_1=BETA_1, beta_2=BETA_2, epsilon=EPSILON, step=step[0])
            else:
                ops.sgd_update(c_params, c_grads, state[0], learning_rate=LEARNING_RATE,
                               momentum=0.9)
        return run, c_params

    def torch_step(epsilon=EPSILON, **kwargs):
        t_params = [gpu.torch_copy(torch, p) for p in params]
        for tp, g in zip(t_params, grads):
            tp.grad = gpu.torch_copy(torch, g)
        if adam:
            optimizer = torch.optim.Adam(t_params, lr=LEARNING_RATE, betas=(BETA_1, BETA_2),
                                         eps=epsilon, **kwargs)
        else:
            optimizer = torch.optim.SGD(t_params, lr=LEARNING_RATE, momentum=0.9, **kwargs)
        return optimizer.step, t_params

    def make():
        ours, _ = fusednn_step()
        contenders = {"fusednn": ours, "torch": torch_step(fused=True)[0],
                      "torch foreach": torch_step(foreach=True)[0]}

        def check():
            step, c_params = fusednn_step()
            # Keras adds epsilon to sqrt(v), torch to sqrt(v / (1 - beta_2^t)): at t = 1
            # torch's epsilon / sqrt(1 - beta_2) is the same update.
            t_step, t_params = torch_step(EPSILON / np.sqrt(1 - BETA_2), fused=True)
            step()
            t_step()
            return gpu.check_close({f"params[{i}] - start": (cp.asnumpy(c) - p,
                                                             t.cpu().numpy() - p)
                                    for i, (c, t, p) in enumerate(zip(c_params, t_params, params))},
                                   1e-4)
        return contenders, check
    return make


def run_gpu(cp, torch, args) -> int:
    info = gpu.start(cp, torch, args, "float32")
    flush = gpu.l2_flush(cp)
    rng = np.random.default_rng(0)
    rows = gpu_ce_rows(cp, torch, args, flush, info["ceilings"]) + \
        gpu_optimizer_rows(cp, torch, rng, args, flush, info["ceilings"])
    return gpu.report("ops", "GPU softmax cross-entropy and optimizer steps: fusednn vs torch "
                      "CUDA", info, rows, args,
                      notes=" Optimizer rows: torch = torch.optim.Adam(fused=True) / "
                            "SGD(fused=True), 'torch foreach' in the JSON; bytes 28 per "
                            "parameter for Adam, 20 for SGD with momentum.")


if __name__ == "__main__":
    main()
