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
ratio torch / fusednn (above 1: fusednn is faster). Optimizer rows also give
the bandwidth implied by the bytes an update must move (Adam: read p, g, m, v
and write p, m, v = 28 bytes per float32 parameter; SGD with momentum: 20).

Writes benchmarks/results/ops-cpu-<date>[-<tag>].json and .md unless --no-write.
    [OMP_NUM_THREADS=1] python benchmarks/bench_ops.py [--repeats 30] [--quick] [--tag 1thread]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from common import (load_average, machine_info, markdown_table, thread_count,
                    time_interleaved, write_results)

import fusednn.ops as ops

CE_SHAPES = [(8192, 10), (2048, 1000), (256, 32000)]

# Parameter shapes of a ~1M-parameter MLP (784-1024-192-10), a ~10M one
# (2048-2048-2048-512-1000 style), and 1M parameters spread over 200 tensors.
OPTIMIZER_MODELS = {
    "1.0M params, 6 tensors": [(784, 1024), (1024,), (1024, 192), (192,), (192, 10), (10,)],
    "10.0M params, 8 tensors": [(2048, 2048), (2048,), (2048, 2048), (2048,), (2048, 512), (512,),
                                (512, 1000), (1000,)],
    "1.0M params, 200 tensors": [(5000,)] * 200,
}


def ce_rows(torch, rng, repeats, quick):
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
            rows.append({"op": f"softmax CE fwd+bwd, {kind}", "shape": f"N={N}, C={C}",
                         "fusednn_ms": times["fusednn"] * 1e3, "torch_ms": times["torch"] * 1e3,
                         "ratio": times["torch"] / times["fusednn"]})
    return rows


def optimizer_rows(torch, rng, repeats, quick):
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
                   "ratio": times["torch foreach"] / times["fusednn"],
                   "fusednn_GBps": bytes_per_param * total / times["fusednn"] / 1e9}
            if "torch fused" in times:
                row["torch_fused_ms"] = times["torch fused"] * 1e3
                row["ratio_fused"] = times["torch fused"] / times["fusednn"]
            rows.append(row)
    return rows


def copy_bandwidth_GBps():
    """numpy.copyto of 256 MiB (read + write; one thread): a reference for the optimizer rows."""
    src = np.ones(64 * 1024 * 1024, np.float32)
    dst = np.empty_like(src)
    seconds = time_interleaved({"copy": lambda: np.copyto(dst, src)}, warmup=1, repeats=5)["copy"]
    return 2 * src.nbytes / seconds / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="one size per op (a smoke run)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--tag", default="", help="suffix of the result files, e.g. 1thread")
    args = parser.parse_args(argv)

    try:
        import torch
    except ImportError:
        sys.exit("bench_ops needs PyTorch (pip install torch) as the reference")
    torch.set_num_threads(thread_count())
    rng = np.random.default_rng(0)

    info = machine_info()
    load_before = load_average()
    rows = ce_rows(torch, rng, args.repeats, args.quick) + \
        optimizer_rows(torch, rng, args.repeats, args.quick)
    bandwidth = copy_bandwidth_GBps()
    load_after = load_average()

    header = ["op", "shape", "fusednn ms", "torch ms", "torch / fusednn", "torch fused ms",
              "torch fused / fusednn", "fusednn GB/s"]
    table = [[r["op"], r["shape"], f"{r['fusednn_ms']:.3f}", f"{r['torch_ms']:.3f}",
              f"{r['ratio']:.2f}x",
              f"{r['torch_fused_ms']:.3f}" if "torch_fused_ms" in r else "",
              f"{r['ratio_fused']:.2f}x" if "ratio_fused" in r else "",
              f"{r['fusednn_GBps']:.1f}" if "fusednn_GBps" in r else ""] for r in rows]
    md = (f"# fusednn CPU ops vs PyTorch CPU\n\n{info['cpu']}, {info['logical_cores']} logical "
          f"cores, {info['threads']} threads; torch {info['torch']}; median of {args.repeats} "
          f"interleaved rounds; load average {load_before} before, {load_after} after; "
          f"numpy copy bandwidth {bandwidth:.1f} GB/s.\n\n" + markdown_table(header, table))
    print(md)
    if not args.no_write:
        payload = {"machine": info, "repeats": args.repeats, "load_average_before": load_before,
                   "load_average_after": load_after, "copy_bandwidth_GBps": bandwidth,
                   "results": rows}
        for path in write_results("ops-cpu", payload, md, tag=args.tag):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
