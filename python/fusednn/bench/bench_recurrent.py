"""Fused LSTM / GRU / SimpleRNN sequence kernels (fusednn.ops) vs torch.nn.LSTM / nn.GRU /
nn.RNN on the CPU, side by side in one process on the same inputs and weights.

Rows: cell (LSTM, GRU with reset_after, torch's form, SimpleRNN with tanh) x mode x batch N
x units U,
T = 60 steps, F input features (default F = U, a stacked layer):
- inference: one forward over the sequence (fusednn training=False; torch under
  inference_mode);
- training: forward (training=True) + backward, i.e. gradients of the inputs,
  initial state and all weights from a gradient on every step's output (torch:
  y.backward(dy) with x requiring grad, so both compute dx).
Before timing, each row checks that both libraries produce the same outputs.
Last, the lecture's LSTM model (LSTM 256 return_sequences on (60, 1) -> Dropout
0.4 -> LSTM 256 -> Dropout 0.4 -> Dense 64 relu -> Dense 1; Adam, MSE): one
training step (train_on_batch) at the lecture's batch 16 and at 64, against the
same model in torch (its LSTMs carry two bias vectors: 2,048 more parameters,
the same arithmetic).

Both libraries get the same thread count (OMP_NUM_THREADS, else all cores).
Warm-up, then --repeats interleaved rounds; medians and the ratio
torch / fusednn (above 1: fusednn is faster). Every row shows the FLOP of its
input and recurrent products per second (rnn_flops; the model rows add their
Dense layers) as a fraction of the CPU's FMA peak (see limits.py). The load average before and
after is recorded: on a shared machine it says how much to trust the times.

GPU rows (--device cuda): fusednn on CuPy arrays (algorithm 'auto'; the JSON
records which ran) vs torch.nn.LSTM / nn.GRU on CUDA (cuDNN, TF32 off, as the
fusednn kernels multiply in float32), batch 1 to 256, units 128 to 1024,
T = 100 and T = 1000 rows; each checked against torch first (relative error
of the norm of y or dx below 1e-3) and shown as a fraction of the measured
float32 GEMM rate for its FLOP (see rnn_flops).

Writes <--out>/recurrent-cpu-<date>[-<tag>].json and .md (recurrent-<gpu>-<date>.*
for the GPU rows) unless --no-write.
    [OMP_NUM_THREADS=1] python -m fusednn.bench.bench_recurrent [--repeats 9] [--quick] [--tag x]
    python -m fusednn.bench.bench_recurrent --device cuda [--quick]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from . import common, cpu, gpu, limits
from .common import load_average, markdown_table, time_interleaved

from fusednn import layers, models, utils
from fusednn.ops import recurrent as rnn

DEVICES = ("cpu", "cuda")
T = 60
BATCHES = (1, 16, 64)
UNITS = (64, 128, 256, 512)
MODES = ("inference", "training")
CELLS = ("lstm", "gru", "rnn")
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def make_weights(rng, cell, F, U):
    """Keras-layout weights scaled like Glorot so the states stay in range."""
    gates = GATES[cell]
    kernel = (rng.standard_normal((F, gates * U)) / np.sqrt(F)).astype(np.float32)
    recurrent = (rng.standard_normal((U, gates * U)) / np.sqrt(U)).astype(np.float32)
    bias_shape = (2, gates * U) if cell == "gru" else (gates * U,)
    bias = (rng.standard_normal(bias_shape) * 0.1).astype(np.float32)
    return kernel, recurrent, bias


def torch_module(torch, cell, F, U, kernel, recurrent, bias):
    """nn.LSTM / nn.GRU / nn.RNN holding the same weights (see tests/test_ops_recurrent.py)."""
    if cell in ("lstm", "rnn"):
        m = (torch.nn.LSTM if cell == "lstm" else torch.nn.RNN)(F, U, batch_first=True)
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


def fusednn_forward(cell, x, h0, weights, training):
    """(y, cache) of fusednn's forward over the sequence (h0 is also c0 for the LSTM)."""
    kernel, recurrent, bias = weights
    if cell == "lstm":
        y, _, _, cache = rnn.lstm_forward(x, h0, h0, kernel, recurrent, bias, training=training)
    elif cell == "gru":
        y, _, cache = rnn.gru_forward(x, h0, kernel, recurrent, bias, training=training)
    else:
        y, _, cache = rnn.simple_rnn_forward(x, h0, kernel, recurrent, bias, training=training)
    return y, cache


def fusednn_call(cell, mode, x, h0, weights, dy):
    """fusednn's row: the forward's y (inference), or forward + backward's dx (training)."""
    def ours():
        if mode == "inference":
            return fusednn_forward(cell, x, h0, weights, False)[0]
        _, cache = fusednn_forward(cell, x, h0, weights, True)
        if cell == "lstm":
            return rnn.lstm_backward(dy, None, None, cache)[0]
        if cell == "gru":
            return rnn.gru_backward(dy, None, cache)[0]
        return rnn.simple_rnn_backward(dy, None, cache)[0]
    return ours


def torch_call(torch, m, mode, tx, t_state, tdy):
    """torch's row, as fusednn_call: y under inference_mode, or dx from y.backward(dy)."""
    tx_grad = tx.clone().requires_grad_()

    def theirs():
        if mode == "inference":
            with torch.inference_mode():
                return m(tx, t_state)[0]
        m.zero_grad(set_to_none=True)
        tx_grad.grad = None
        y = m(tx_grad, t_state)[0]
        y.backward(tdy)
        return tx_grad.grad
    return theirs


def contenders(torch, cell, mode, x, h0, weights, dy):
    """(fusednn callable, torch callable, check) for one row; check() compares outputs."""
    N, _, F = x.shape
    U = h0.shape[1]
    m = torch_module(torch, cell, F, U, *weights)
    th0 = torch.from_numpy(h0)[None]
    t_state = (th0, th0.clone()) if cell == "lstm" else th0
    ours = fusednn_call(cell, mode, x, h0, weights, dy)
    theirs = torch_call(torch, m, mode, torch.from_numpy(x), t_state, torch.from_numpy(dy))

    def check():
        np.testing.assert_allclose(ours(), theirs().numpy(), rtol=1e-3, atol=1e-4)
    return ours, theirs, check


LECTURE_BATCHES = (16, 64)


def lecture_model_flops(batch) -> float:
    """FLOP of one training step of the lecture's LSTM model: its two LSTMs' products as
    rnn_flops counts them and its Dense layers' (forward, data and weight gradients)."""
    dense = 3 * 2.0 * batch * (256 * 64 + 64 * 1)
    return (rnn_flops("lstm", "training", batch, T, 1, 256)
            + rnn_flops("lstm", "training", batch, T, 256, 256) + dense)


def lecture_model_contenders(torch, batch):
    """name -> one training step of the lecture's LSTM model (torch: when given)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, T, 1)).astype(np.float32)
    y = rng.standard_normal((batch, 1)).astype(np.float32)
    utils.set_random_seed(0)
    model = models.Sequential()
    model.add(layers.LSTM(units=256, input_shape=(T, 1), return_sequences=True))
    model.add(layers.Dropout(0.4))
    model.add(layers.LSTM(units=256, return_sequences=False))
    model.add(layers.Dropout(0.4))
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(1))
    model.compile(optimizer="adam", loss="mse")
    assert model.count_params() == 806_017
    calls = {"fusednn": lambda: model.train_on_batch(x, y)}
    if torch is None:
        return calls
    nn = torch.nn

    class LectureLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm1 = nn.LSTM(1, 256, batch_first=True)
            self.lstm2 = nn.LSTM(256, 256, batch_first=True)
            self.dropout = nn.Dropout(0.4)
            self.dense1 = nn.Linear(256, 64)
            self.dense2 = nn.Linear(64, 1)

        def forward(self, inputs):
            sequence, _ = self.lstm1(inputs)
            last = self.lstm2(self.dropout(sequence))[0][:, -1]
            return self.dense2(torch.relu(self.dense1(self.dropout(last))))

    net = LectureLSTM()
    assert sum(p.numel() for p in net.parameters()) == 806_017 + 2 * 4 * 256
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def torch_step():
        optimizer.zero_grad()
        loss = loss_fn(net(tx), ty)
        loss.backward()
        optimizer.step()
        return loss.detach()

    calls["torch"] = torch_step
    return calls


def run(args):
    threads, torch, info = cpu.start(args)
    if torch is None:
        sys.exit("bench_recurrent needs torch (pip install torch) as the comparison")
    info["T"] = T
    hardware = info["limits"]
    rng = np.random.default_rng(0)
    batches = (1, 16) if args.quick else BATCHES
    units = (64, 256) if args.quick else UNITS
    rows = []
    for cell in CELLS:
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
                                             warmup=args.warmup, repeats=args.repeats)
                    row = {"cell": cell, "mode": mode, "N": N, "T": T, "F": F, "U": U,
                           "fusednn_ms": times["fusednn"] * 1e3,
                           "torch_ms": times["torch"] * 1e3,
                           "ratio": times["torch"] / times["fusednn"],
                           "load": load_average()[0]}
                    rows.append(limits.fill(row, times, hardware,
                                            flops=rnn_flops(cell, mode, N, T, F, U)))
                    print(f"{cell:4s} {mode:9s} N={N:3d} U={U:3d}: fusednn "
                          f"{row['fusednn_ms']:8.2f} ms, torch {row['torch_ms']:8.2f} ms, "
                          f"x{row['ratio']:.2f} (load {row['load']})", flush=True)
    for N in LECTURE_BATCHES:
        times = time_interleaved(lecture_model_contenders(torch, N), warmup=args.warmup,
                                 repeats=args.repeats)
        row = {"cell": "lecture LSTM model", "mode": "training step", "N": N, "T": T, "F": 1,
               "U": 256, "fusednn_ms": times["fusednn"] * 1e3, "torch_ms": times["torch"] * 1e3,
               "ratio": times["torch"] / times["fusednn"], "load": load_average()[0]}
        rows.append(limits.fill(row, times, hardware, flops=lecture_model_flops(N)))
        print(f"lecture LSTM model training step N={N:3d}: fusednn {row['fusednn_ms']:8.2f} ms, "
              f"torch {row['torch_ms']:8.2f} ms, x{row['ratio']:.2f} (load {row['load']})",
              flush=True)
    info["load_average_after"] = load_average()

    header = ["cell", "mode", "N", "U", "F", "fusednn ms", "torch ms", "torch / fusednn",
              "fusednn of limit", "torch of limit", "limit", "load"]
    table = markdown_table(header, [
        [r["cell"], r["mode"], r["N"], r["U"], r["F"], f"{r['fusednn_ms']:.2f}",
         f"{r['torch_ms']:.2f}", f"{r['ratio']:.2f}"] + common.fraction_cells(r) + [r["load"]]
        for r in rows])
    markdown = (f"# Recurrent kernels vs PyTorch CPU (T = {T}, float32)\n\n"
                f"CPU: {info['cpu']} ({info['cpu_simd']}), threads: {threads}, torch "
                f"{info['torch']}, load average before {info['load_average_before']}, after "
                f"{info['load_average_after']}.\n"
                "Ratio above 1: fusednn is faster. Medians of interleaved rounds. "
                f"{limits.describe(hardware)}\n\n" + table)
    print()
    print(markdown)
    for path in common.write_results(args, "recurrent-cpu", {"info": info, "results": rows},
                                     markdown, tag=args.tag):
        print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--features", type=int, default=0,
                        help="input features F (default: F = U)")
    parser.add_argument("--quick", action="store_true", help="a few small rows only")
    parser.add_argument("--tag", default="", help="suffix for the results file names")
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    common.add_run_options(parser)
    args = parser.parse_args(argv)
    if args.device == "cuda":
        gpu.main_or_exit(run_gpu, args)
    else:
        run(args)


# ----- GPU rows -------------------------------------------------------------------
# (N, U, T): batch 1 to 256 and units 128 to 1024 at T = 100, and two long sequences.
GPU_CASES = [(N, U, 100) for N in (1, 16, 64, 256) for U in (128, 512, 1024)] + \
    [(1, 128, 1000), (64, 512, 1000)]
GPU_QUICK_CASES = [(1, 128, 100), (64, 512, 100), (64, 512, 1000)]


def rnn_flops(cell, mode, N, T, F, U) -> float:
    """Multiply-adds x 2 of the input and recurrent products (the pointwise gate math is
    left out); training adds the backward's two products per forward one (data and
    weight gradients)."""
    gates = GATES[cell]
    forward = 2.0 * N * T * (F + U) * gates * U
    return forward * (3 if mode == "training" else 1)


def gpu_pair(cp, torch, cell, mode, x, h0, weights, dy):
    """make() for gpu.measure_row, and a dict that gets the algorithm fusednn ran."""
    N, _, F = x.shape
    U = h0.shape[1]
    m = torch_module(torch, cell, F, U, *weights).to(gpu.TORCH_DEVICE)
    th0 = gpu.torch_copy(torch, h0)[None]
    t_state = (th0, th0.clone()) if cell == "lstm" else th0
    theirs = torch_call(torch, m, mode, gpu.torch_copy(torch, x), t_state,
                        gpu.torch_copy(torch, dy))
    cx, ch0 = cp.asarray(x), cp.asarray(h0)
    c_weights = tuple(cp.asarray(w) for w in weights)
    ours = fusednn_call(cell, mode, cx, ch0, c_weights, cp.asarray(dy))
    ran = {}

    def make():
        def check():
            ran["algorithm"] = rnn.recurrent_algorithm(
                fusednn_forward(cell, cx, ch0, c_weights, True)[1])
            return gpu.check_close({"y" if mode == "inference" else "dx":
                                    (cp.asnumpy(ours()), theirs().cpu().numpy())}, 1e-3)
        return {"fusednn": ours, "torch": theirs}, check
    return make, ran


def run_gpu(cp, torch, args) -> int:
    gpu.set_tf32(torch, False)
    info = gpu.start(cp, torch, args, "float32 (torch TF32 off)")
    flush = gpu.l2_flush(cp)
    rng = np.random.default_rng(0)
    rows = []
    for cell in ("lstm", "gru"):
        for mode in MODES:
            for N, U, steps in GPU_QUICK_CASES if args.quick else GPU_CASES:
                F = args.features or U
                x = rng.standard_normal((N, steps, F), dtype=np.float32)
                h0 = np.zeros((N, U), np.float32)
                dy = rng.standard_normal((N, steps, U), dtype=np.float32)
                make, ran = gpu_pair(cp, torch, cell, mode, x, h0, make_weights(rng, cell, F, U),
                                     dy)
                row = {"name": f"{cell} N={N} U={U} T={steps} F={F}", "pass": mode,
                       "cell": cell, "mode": mode, "N": N, "T": steps, "F": F, "U": U}
                gpu.measure_row(row, make, warmup=args.warmup, repeats=args.repeats,
                                flush=flush, flops=rnn_flops(cell, mode, N, steps, F, U),
                                ceiling=info["ceilings"])
                row["fusednn_algorithm"] = ran.get("algorithm")
                rows.append(row)
                print(gpu.format_row(row) + f" {row['fusednn_algorithm']}", flush=True)
    return gpu.report("recurrent", "GPU LSTM and GRU: fusednn vs cuDNN (torch.nn.LSTM / nn.GRU)",
                      info, rows, args,
                      notes=" Fractions: FLOP of the input and recurrent products over the "
                            "float32 (TF32 off) GEMM rate.")


if __name__ == "__main__":
    main()
