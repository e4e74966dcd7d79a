"""Per-step overheads the trainers share, each against the way it was done before, in the
same process: the show prior's step (age curve by an embedding vs `bucket_lookup`), padding
user histories (a copy per row vs one scatter), Adam's update (one tensor at a time vs
fused), dropout (torch's vs `fast_dropout`, forward and backward), the temporal model's
seasonal exposure (a gathered row per show vs one per origin) and its negatives' prior rows
(advanced indexing vs one flat `index_select`). Sizes are the demo world's: 1,500 shows,
batches of 256 watches, dim 128; dropout at the anime multimodal encoder's packed width
(20,480 tokens x 256, its feed-forward) and a temporal step's tokens (64 windows x 50
events x 64).

    python bench/bench_step_overheads.py [--repeat 50]

Prints medians in milliseconds and the ratio old / new.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from tvrec.models.layers import fast_dropout, pad_histories
from tvrec.models.prior import ShowPrior, age_buckets
from tvrec.models.temporal import N_CELLS, rows_at, seasonal_exposure


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    for _ in range(3):  # warm-up
        fn()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


def prior_step(embedding_lookup: bool) -> Callable[[], None]:
    """One show-prior step on the demo's shapes; `embedding_lookup`: the age curve as an
    nn.Embedding call (its backward sorts every (watch, show) index)."""
    gen = torch.Generator().manual_seed(0)
    n, dim, b = 1500, 128, 256
    prior = ShowPrior(dim, n)
    shows = F.normalize(torch.randn(n, dim, generator=gen), dim=1)
    users = F.normalize(torch.randn(b, dim, generator=gen), dim=1)
    premiered = torch.randint(15_000, 19_000, (n,), generator=gen)
    day = torch.randint(18_000, 19_500, (b,), generator=gen)
    seen = torch.rand(b, n, generator=gen) < 0.02
    targets = torch.randint(0, n, (b,), generator=gen)
    opt = torch.optim.AdamW(prior.parameters(), lr=1e-3, fused=True)

    def step() -> None:
        ages = age_buckets(premiered, day)  # (b, n)
        if embedding_lookup:
            content = prior.prior_mlp(shows).squeeze(-1)[None, :] + prior.age_curve(ages)[..., 0]
            logits = users @ shows.T * prior.log_scale.exp() + content
        else:
            logits = prior.logits(users, shows, ages)
        loss = F.cross_entropy(logits.masked_fill(seen, float("-inf")), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def pad_per_row(histories: Sequence[np.ndarray], length: int) -> tuple[torch.Tensor, ...]:
    """The old padding: a copy per row."""
    index = torch.zeros(len(histories), length, dtype=torch.long)
    mask = torch.zeros(len(histories), length, dtype=torch.bool)
    for i, h in enumerate(histories):
        tail = list(h)[-length:]
        if tail:
            index[i, length - len(tail) :] = torch.as_tensor(tail, dtype=torch.long)
            mask[i, length - len(tail) :] = True
    return index, mask


def adam_step(**kwargs: bool) -> Callable[[], None]:
    """An update of a graph-model-sized parameter set (about 200 tensors, 1.8 M values)."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(64, 64)) for _ in range(100)]
    params += [torch.nn.Parameter(torch.randn(64)) for _ in range(100)]
    params += [torch.nn.Parameter(torch.randn(n, 64)) for n in (5000, 1500, 20_000)]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = torch.optim.Adam(params, lr=1e-2, **kwargs)
    return opt.step


def dropout_step(shape: tuple[int, ...], fast: bool) -> Callable[[], None]:
    """Dropout (p = 0.1) forward and backward on a tensor of `shape`."""
    x = torch.randn(*shape, requires_grad=True)
    drop = fast_dropout if fast else F.dropout

    def step() -> None:
        drop(x, 0.1, True).sum().backward()

    return step


def exposure_step(fast: bool) -> Callable[[], None]:
    """The seasonal level's exposure of 32 origins x 1,500 shows over 365 days (50 shows
    premiered inside the window), forward and backward."""
    gen = torch.Generator().manual_seed(0)
    o, n = 32, 1500
    exposure = torch.rand(o, 366, N_CELLS, generator=gen).cumsum(1).requires_grad_()
    year = torch.rand(o, n, 12, generator=gen).requires_grad_()
    week = torch.rand(o, n, 7, generator=gen).requires_grad_()
    on_air = torch.randint(0, 2000, (o, n), generator=gen).clamp(max=365)
    on_air[:, :50] = torch.randint(0, 365, (o, 50), generator=gen)

    def gathered() -> torch.Tensor:
        cells = (year[..., :, None] * week[..., None, :]).reshape(o, n, N_CELLS)
        return (exposure.gather(1, on_air[..., None].expand(o, n, N_CELLS)) * cells).sum(-1)

    def step() -> None:
        days = seasonal_exposure(exposure, on_air, year, week) if fast else gathered()
        days.sum().backward()

    return step


def prior_rows(fast: bool) -> Callable[[], torch.Tensor]:
    """A temporal step's negatives' signals: 646 days x 512 shows of a (730, 1,500, 9) table."""
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(730, 1500, 9, generator=gen)
    days = torch.randint(0, 730, (1600,), generator=gen).unique()
    shows = torch.randint(0, 1500, (512,), generator=gen)
    if fast:
        return lambda: rows_at(table, days, shows)
    return lambda: table[days[:, None], shows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    gen = np.random.default_rng(0)
    histories = [gen.integers(0, 1500, int(gen.integers(1, 200))) for _ in range(256)]
    cases = {
        "show prior step (256 watches x 1,500 shows)": (prior_step(True), prior_step(False)),
        "pad_histories (256 users, 1-200 shows, length 20)": (
            lambda: pad_per_row(histories, 20),
            lambda: pad_histories(histories, 20),
        ),
        "Adam update (203 tensors, 1.8 M values)": (
            adam_step(foreach=False),
            adam_step(fused=True),
        ),
        "dropout (20,480 x 256, forward and backward)": (
            dropout_step((20_480, 256), False),
            dropout_step((20_480, 256), True),
        ),
        "dropout (64 x 50 x 64, forward and backward)": (
            dropout_step((64, 50, 64), False),
            dropout_step((64, 50, 64), True),
        ),
        "seasonal exposure (32 origins x 1,500 shows, forward and backward)": (
            exposure_step(False),
            exposure_step(True),
        ),
        "temporal negatives' prior rows (646 days x 512 shows x 9)": (
            prior_rows(False),
            prior_rows(True),
        ),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeat}")
    print("| step | before (ms) | now (ms) | ratio |\n|---|---:|---:|---:|")
    for name, (before, now) in cases.items():
        old, new = median_ms(before, args.repeat), median_ms(now, args.repeat)
        print(f"| {name} | {old:.2f} | {new:.2f} | {old / new:.1f}x |")


if __name__ == "__main__":
    main()
