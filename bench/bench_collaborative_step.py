"""The collaborative model's training epoch: the dense encoder it had (a (users x catalogue)
history matrix times W) against the bag encoder it has (F.embedding_bag over the watched
shows), same shapes and optimiser, in one process. Prints the median seconds per epoch.

    python bench/bench_collaborative_step.py [--users 5000] [--shows 1500] [--density 0.04]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from tvrec.models.collaborative import CollaborativeNet, Histories
from tvrec.models.losses import multinomial_nll


def dense_logits(net: CollaborativeNet, x: torch.Tensor, dropout: float) -> torch.Tensor:
    """The encoder before: dropout and normalisation on the dense (batch, n_shows) history."""
    h = nn.functional.dropout(x, dropout, training=True)
    h = h / h.sum(dim=1, keepdim=True).clamp(min=1.0).sqrt()
    return net.show_arch(torch.tanh(net.user_arch(h)))


def epoch(net: CollaborativeNet, hist: Histories, dense: bool, opt: torch.optim.Optimizer) -> float:
    t0 = time.perf_counter()
    order = torch.randperm(len(hist))
    for start in range(0, len(order), 256):
        users = order[start : start + 256]
        target = hist.dense(users)  # (batch, n_shows)
        logits = dense_logits(net, target, 0.5) if dense else net(hist.bags(users, 0.5))
        loss = multinomial_nll(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--shows", type=int, default=1500)
    p.add_argument("--density", type=float, default=0.04)
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    x = torch.rand(args.users, args.shows) < args.density
    hist = Histories([row.nonzero().flatten().tolist() for row in x], args.shows)
    print(f"{args.users:,} users, {args.shows:,} shows, {int(x.sum()):,} watched pairs, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    times = {}
    for name, dense in (("dense encoder (before)", True), ("bag encoder (now)", False)):
        net = CollaborativeNet(args.shows, 200)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
        epoch(net, hist, dense, opt)  # warm-up
        times[name] = statistics.median(epoch(net, hist, dense, opt) for _ in range(args.epochs))
        print(f"{name:24s} {times[name]:.3f} s/epoch")
    before, now = times.values()
    print(f"ratio now/before: {now / before:.2f}")


if __name__ == "__main__":
    main()
