"""Training throughput: our hooked model vs. a bare nanoGPT of identical shape (same run, same threads).

    python bench/train_throughput.py                      # CPU, tinystories-1m and -3m, fp32
    python bench/train_throughput.py --device cuda --bf16 # GPU, tinystories-8m and -33m, bf16 autocast

One training step = forward + loss + backward + AdamW step on a batch of 16 x 256 random tokens
(d_vocab 10,001). Both models are timed in the same process with the same thread count, warm-up
steps excluded; the measurement alternates between the two models (ours, bare, bare, ours, ...)
so drifting machine load hits both alike, and reports the median of the repeats.

FLOPs per trained token (the PaLM / Chinchilla convention): ``6 * N_matmul + 12 * n_layers * d_model * T``
where N_matmul counts the weights of every matmul (qkv, out, fc_in, fc_out, unembed; not the
embedding lookups, biases or LayerNorms) and the second term is attention's QK^T and AV (forward
2 * 2 * T * d per layer, times 3 for forward + backward, no causal discount). Achieved GFLOP/s is set
against the peak of one large ``torch.matmul`` measured in this script (fp32 on CPU, bf16 on CUDA;
the ratio is the MFU). The last line is ``ratio=<smallest ours/bare tokens/s ratio>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bare_gpt import BareGPT  # noqa: E402
from tinyinterp.models.transformer import HookedTransformer  # noqa: E402
from tinyinterp.models.zoo import preset_config  # noqa: E402

D_VOCAB = 10_001


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n x n matmul (2 n^3 flops)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t) / 4)
    return 2 * n**3 / best / 1e9


def flops_per_token(cfg, seq_len: int) -> int:
    d, m = cfg.d_model, cfg.d_mlp
    n_matmul = cfg.n_layers * (4 * d * d + 2 * d * m) + d * cfg.d_vocab
    return 6 * n_matmul + 12 * cfg.n_layers * d * seq_len


class StepRunner:
    """One model + AdamW + a fixed batch; ``run(n)`` returns seconds for n training steps."""

    def __init__(self, model: torch.nn.Module, hooked: bool, batch: torch.Tensor, device: torch.device, bf16: bool):
        self.model, self.hooked, self.device, self.bf16 = model.to(device).train(), hooked, device, bf16
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                     fused=device.type == "cuda")
        self.x, self.y = batch[:, :-1].to(device), batch[:, 1:].to(device)

    def step(self) -> None:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if self.hooked:
                loss = self.model(self.x, return_type="loss", targets=self.y)
            else:
                loss = self.model(self.x, self.y)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def run(self, n: int) -> tuple[float, float]:
        """(wall seconds, process CPU seconds) of n steps."""
        sync(self.device)
        t, c = time.perf_counter(), time.process_time()
        for _ in range(n):
            self.step()
        sync(self.device)
        return time.perf_counter() - t, time.process_time() - c


def bench_preset(preset: str, args, device: torch.device) -> dict:
    cfg = preset_config(preset, d_vocab=D_VOCAB)
    torch.manual_seed(0)
    batch = torch.randint(0, D_VOCAB, (args.batch, args.seq_len + 1))
    runners = {"ours": StepRunner(HookedTransformer(cfg), True, batch, device, args.bf16),
               "bare": StepRunner(BareGPT(cfg), False, batch, device, args.bf16)}
    for r in runners.values():
        r.run(args.warmup)
    wall, cpu = {name: [] for name in runners}, {name: [] for name in runners}
    for rep in range(args.repeats):
        order = ("ours", "bare") if rep % 2 == 0 else ("bare", "ours")  # ABBA: load drift hits both
        for name in order:
            w, c = runners[name].run(args.steps)
            wall[name].append(w)
            cpu[name].append(c)
    tokens = args.batch * args.seq_len * args.steps
    tps = {name: tokens / statistics.median(t) for name, t in wall.items()}
    tpcpu = {name: tokens / statistics.median(t) for name, t in cpu.items()}
    fpt = flops_per_token(cfg, args.seq_len)
    ratio_wall, ratio_cpu = tps["ours"] / tps["bare"], tpcpu["ours"] / tpcpu["bare"]
    return {"preset": preset, "tps": tps, "tokens_per_cpu_s": tpcpu, "ratio_wall": ratio_wall, "ratio_cpu": ratio_cpu,
            "ratio": ratio_cpu if args.clock == "cpu" else ratio_wall,
            "gflops": {n: v * fpt / 1e9 for n, v in tps.items()},
            "params": sum(p.numel() for p in runners["ours"].model.parameters())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA); MFU against a bf16 matmul peak")
    parser.add_argument("--presets", nargs="+", default=None,
                        help="zoo presets (default: tinystories-1m tinystories-3m on CPU, -8m -33m with --bf16)")
    parser.add_argument("--batch", type=int, default=16, help="sequences per step (default 16)")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per sequence (default 256)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed repeat (default 5 on CPU, 20 on CUDA)")
    parser.add_argument("--repeats", type=int, default=6, help="timed repeats per model, alternating (default 6)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps per model (default 3)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="which ratio the last line reports: wall-clock tokens/s (default) or tokens per process "
                             "CPU-second (steadier on a machine shared with other jobs; use with --threads 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.steps = args.steps or (20 if device.type == "cuda" else 5)
    presets = args.presets or (["tinystories-8m", "tinystories-33m"] if args.bf16 else ["tinystories-1m", "tinystories-3m"])
    peak_dtype = torch.bfloat16 if args.bf16 else torch.float32
    peak = matmul_peak_gflops(device, peak_dtype, 8192 if device.type == "cuda" else 1024)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {where}; batch {args.batch} x {args.seq_len}; {str(peak_dtype).split('.')[-1]} matmul peak {peak:.1f} GFLOP/s")
    results = []
    for preset in presets:
        r = bench_preset(preset, args, device)
        results.append(r)
        print(f"{preset:>18} ({r['params'] / 1e6:.2f}M params): ours {r['tps']['ours']:9.0f} tok/s "
              f"({r['gflops']['ours']:.1f} GFLOP/s, {100 * r['gflops']['ours'] / peak:.1f}% of peak) | "
              f"bare {r['tps']['bare']:9.0f} tok/s ({r['gflops']['bare']:.1f} GFLOP/s, {100 * r['gflops']['bare'] / peak:.1f}% of peak) | "
              f"ratio {r['ratio_wall']:.3f} (wall), {r['ratio_cpu']:.3f} (CPU time: ours {r['tokens_per_cpu_s']['ours']:.0f}, "
              f"bare {r['tokens_per_cpu_s']['bare']:.0f} tok per CPU-s)")
    print(f"ratio={min(r['ratio'] for r in results):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
