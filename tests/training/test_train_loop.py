"""The training loop every world stage shares: step budget, --cosine, checkpoint and resume."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from training.world.train import build_parser
from training.world.train_loop import Loop


def _args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    args = build_parser().parse_args(["binder", "--steps", "6", "--minutes", "5", *extra])
    args.work = tmp_path / "binder"
    return args


def _train(loop: Loop, model: torch.nn.Module) -> list[float]:
    lrs = []
    x = torch.linspace(-1, 1, 16)[:, None]
    while loop.running():
        loop.update(((model(x) - 2 * x) ** 2).mean())
        lrs.append(loop.opt.param_groups[0]["lr"])
    return lrs


def test_cosine_option_reaches_every_stage_loop(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    plain = Loop.from_args(_args(tmp_path), {"m": model}, torch.optim.SGD(model.parameters(), lr=0.1))
    assert _train(plain, model) == [0.1] * 6

    model = torch.nn.Linear(1, 1)
    cos = Loop.from_args(_args(tmp_path / "c", "--cosine"), {"m": model},
                         torch.optim.SGD(model.parameters(), lr=0.1))
    lrs = _train(cos, model)
    assert len(lrs) == 6
    assert all(b < a for a, b in zip(lrs, lrs[1:], strict=False))
    assert abs(lrs[0] - 0.1) < 1e-6
    assert 0.01 <= lrs[-1] < 0.02  # towards 10% of the base rate at the end of the budget


def test_resume_continues_where_the_checkpoint_left(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    args = _args(tmp_path)
    args.steps = 3
    loop = Loop.from_args(args, {"m": model}, torch.optim.Adam(model.parameters(), lr=0.05))
    _train(loop, model)
    loop.save()
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    fresh = torch.nn.Linear(1, 1)
    args.steps = 5
    again = Loop.from_args(args, {"m": fresh}, torch.optim.Adam(fresh.parameters(), lr=0.05))
    assert again.resume()
    assert again.step_i == 3
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, saved[k])
    assert len(_train(again, fresh)) == 2
    assert not Loop.from_args(_args(tmp_path / "none"), {"m": fresh},
                              torch.optim.Adam(fresh.parameters())).resume()
