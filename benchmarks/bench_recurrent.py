"""Fused LSTM / GRU sequence kernels (fusednn.ops) vs torch.nn.LSTM / nn.GRU on the
CPU, side by side in one process on the same inputs and weights.

Rows: cell (LSTM, GRU with reset_after, torch's form) x mode x batch N x units U,
T = 60 steps, F input features (default F = U, a stacked layer):
- inference: one forward over the sequence (fusednn training=False; torch under
  inference_mode);
- training: forward (training=True) + backward, i.e. gradients of the inputs,
  initial state and all weights from a gradient on every step's output (torch:
  y.backward(dy) with x requiring grad, so both compute dx).
Before timing, each row checks that both libraries produce the same outputs.

Both libraries get the same thread count (OMP_NUM_THREADS, else all cores).
Warm-up, then --repeats interleaved rounds; medians and the ratio
torch / fusednn (above 1: fusednn is faster). The load average before and
after is recorded: on a shared machine it says how much to trust the times.

Writes benchmarks/results/recurrent-cpu-<date>[-<tag>].json and .md unless --no-write.
    [OMP_NUM_THREADS=1] python benchmarks/bench_recurrent.py [--repeats 9] [--quick] [--tag x]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from common import (load_average, machine_info, markdown_table, thread_count,
                    time_interleaved, write_results)

from fusednn.ops import recurrent as rnn

T = 60
BATCHES = (1, 16, 64)
UNITS = (64, 128, 256, 512)
MODES = ("inference", "training")


def make_weights(rng, cell, F, U):
    """Keras-layout weights scaled like Glorot so the states stay in range."""
    gates = 4 if cell == "lstm" else 3
    kernel = (rng.standard_normal((F, gates * U)) / np.sqrt(F)).astype(np.float32)
    recurrent = (rng.standard_normal((U, gates * U)) / np.sqrt(U)).astype(np.float32)
    bias_shape = (gates * U,) if cell == "lstm" else (2, gates * U)
    bias = (rng.standard_normal(bias_shape) * 0.1).astype(np.float32)
    return kernel, recurrent, bias


def torch_module(torch, cell, F, U, kernel, recurrent, bias):
    """nn.LSTM / nn.GRU holding the same weights (see tests/test_ops_recurrent.py)."""
    if cell == "lstm":
        m = torch.nn.LSTM(F, U, batch_first=True)
        w_ih, w_hh, b_ih, b_hh = kernel.T, recurrent.T, bias, np.zeros_like(bias)
    else:
        # Keras (z, r, h) -> torch (r, z, n).
        order = lambda a: np.concatenate([a[U:2 * U], a[:U], a[2 * U:]])  # noqa: E731
        m = torch.nn.GRU(F, U, batch_first=True)
        w_ih, w_hh = order(kernel.T), order(recurrent.T)
        b_ih, b_hh = order(bias[0]), order(bias[1])
    with torch.no_grad():
        for p, v in [(m.weight_ih_l0, w_ih), (m.weight_hh_l0, w_hh), (m.bias_ih_l0, b_ih),
                     (m.bias_hh_l0, b_hh)]:
            p.copy_(torch.from_numpy(np.ascontiguousarray(v)))
    return m


def contenders(torch, cell, mode, x, h0, weights, dy):
    """(fusednn callable, torch callable, check) for one row; check() compares outputs."""
    N, _, F = x.shape
    U = h0.shape[1]
    kernel, recurrent, bias = weights
    m = torch_module(torch, cell, F, U, kernel, recurrent, bias)
    tx = torch.from_numpy(x)
    th0 = torch.from_numpy(h0)[None]
    t_state = (th0, th0.clone()) if cell == "lstm" else th0
    tdy = torch.from_numpy(dy)

    def fused_forward(training):
        if cell == "lstm":
            y, _, _, cache = rnn.lstm_forward(x, h0, h0, kernel, recurrent, bias,
                                              training=training)
        else:
            y, _, cache = rnn.gru_forward(x, h0, kernel, recurrent, bias, training=training)
        return y, cache

    if mode == "inference":
        def ours():
            return fused_forward(False)[0]

        def theirs():
            with torch.inference_mode():
                return m(tx, t_state)[0]

        def check():
            np.testing.assert_allclose(ours(), theirs().numpy(), rtol=1e-3, atol=1e-4)
    else:
        tx_grad = tx.clone().requires_grad_()

        def ours():
            y, cache = fused_forward(True)
            if cell == "lstm":
                return rnn.lstm_backward(dy, None, None, cache)[0]
            return rnn.gru_backward(dy, None, cache)[0]

        def theirs():
            m.zero_grad(set_to_none=True)
            tx_grad.grad = None
            y = m(tx_grad, t_state)[0]
            y.backward(tdy)
            return tx_grad.grad

        def check():
            np.testing.assert_allclose(ours(), theirs().numpy(), rtol=1e-3, atol=1e-4)
    return ours, theirs, check


def run(args):
    try:
        import torch
    except ImportError:
        sys.exit("bench_recurrent.py needs torch (pip install torch) as the comparison")
    threads = thread_count()
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    batches = (1, 16) if args.quick else BATCHES
    units = (64, 256) if args.quick else UNITS
    load_before = load_average()
    rows = []
    for cell in ("lstm", "gru"):
        for mode in MODES:
            for N in batches:
                for U in units:
                    F = args.features or U
                    x = rng.standard_normal((N, T, F)).astype(np.float32)
                    h0 = np.zeros((N, U), np.float32)
                    dy = rng.standard_normal((N, T, U)).astype(np.float32)
                    ours, theirs, check = contenders(torch, cell, mode, x, h0,
                                                     make_weights(rng, cell, F, U), dy)
                    check()
                    times = time_interleaved({"fusednn": ours, "torch": theirs},
                                             warmup=2, repeats=args.repeats)
                    row = {"cell": cell, "mode": mode, "N": N, "T": T, "F": F, "U": U,
                           "fusednn_ms": times["fusednn"] * 1e3,
                           "torch_ms": times["torch"] * 1e3,
                           "ratio": times["torch"] / times["fusednn"],
                           "load": load_average()[0]}
                    rows.append(row)
                    print(f"{cell:4s} {mode:9s} N={N:3d} U={U:3d}: fusednn "
                          f"{row['fusednn_ms']:8.2f} ms, torch {row['torch_ms']:8.2f} ms, "
                          f"x{row['ratio']:.2f} (load {row['load']})", flush=True)
    load_after = load_average()

    header = ["cell", "mode", "N", "U", "F", "fusednn ms", "torch ms", "torch / fusednn", "load"]
    table = markdown_table(header, [
        [r["cell"], r["mode"], r["N"], r["U"], r["F"], f"{r['fusednn_ms']:.2f}",
         f"{r['torch_ms']:.2f}", f"{r['ratio']:.2f}", r["load"]] for r in rows])
    info = machine_info()
    markdown = (f"# Recurrent kernels vs PyTorch CPU (T = {T}, float32)\n\n"
                f"CPU: {info['cpu']}, threads: {threads}, torch {info.get('torch')}, "
                f"load average before {load_before}, after {load_after}.\n"
                "Ratio above 1: fusednn is faster. Medians of interleaved rounds.\n\n" + table)
    print()
    print(markdown)
    if not args.no_write:
        payload = {"benchmark": "recurrent-cpu", "T": T, "threads": threads, "machine": info,
                   "load_average_before": load_before, "load_average_after": load_after,
                   "repeats": args.repeats, "rows": rows}
        stem = "recurrent-cpu" + (f"-{args.tag}" if args.tag else "")
        for path in write_results(stem, payload, markdown):
            print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--features", type=int, default=0,
                        help="input features F (default: F = U)")
    parser.add_argument("--quick", action="store_true", help="a few small rows only")
    parser.add_argument("--tag", default="", help="suffix for the results file names")
    parser.add_argument("--no-write", action="store_true")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
