"""A small resumable training loop shared by every world-training stage.

It stops at a step count or a wall-time budget (whichever comes first), checkpoints
every few minutes (models, optimiser, EMA, RNG states, elapsed time), resumes from
that checkpoint with ``--resume``, and logs running losses as JSON lines.
"""

from __future__ import annotations

import copy
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA when available, else CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class EMA:
    """Exponential moving average of a module's parameters (the weights we ship)."""

    def __init__(self, module: torch.nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow.parameters(), module.parameters(), strict=True):
            s.lerp_(p.detach(), 1 - d)
        for s, b in zip(self.shadow.buffers(), module.buffers(), strict=True):
            s.copy_(b)


class Loop:
    """Step/time-bounded loop with checkpoints; see the module docstring."""

    def __init__(
        self,
        work_dir: Path,
        modules: dict[str, torch.nn.Module],
        optimizer: torch.optim.Optimizer,
        steps: int,
        minutes: float,
        ckpt_every_s: float = 180.0,
        log_every: int = 50,
        emas: dict[str, EMA] | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        cosine: bool = False,
        aux_optimizers: dict[str, torch.optim.Optimizer] | None = None,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.modules, self.opt, self.emas, self.sched = modules, optimizer, emas or {}, scheduler
        # Optimisers the stage steps itself (a GAN's discriminator): only checkpointed here.
        self.aux_opts = aux_optimizers or {}
        self.steps, self.budget_s = steps, minutes * 60.0
        # Cosine decay to 10% over whichever budget (steps or wall time) runs out first;
        # time-based because a stage's length on a given machine is set by --minutes.
        self.cosine = cosine
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.ckpt_every_s, self.log_every = ckpt_every_s, log_every
        self.step_i = 0
        self.elapsed_prev = 0.0
        self.t0 = time.time()
        self.last_ckpt = time.time()
        self.last_log = time.time()
        self.acc: dict[str, list[float]] = {}
        self.last_losses: dict[str, float] = {}

    @classmethod
    def from_args(
        cls, args, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, **kw
    ) -> Loop:
        """A stage's loop from its parsed options (work dir, steps, minutes, checkpoints,
        --cosine), resumed from the stage's checkpoint when --resume is given."""
        loop = cls(args.work, modules, optimizer, args.steps, args.minutes, args.ckpt_every,
                   cosine=bool(getattr(args, "cosine", False)), **kw)
        if getattr(args, "resume", False):
            loop.resume()
        return loop

    @property
    def ckpt_path(self) -> Path:
        return self.work_dir / "checkpoint.pt"

    @property
    def elapsed(self) -> float:
        return self.elapsed_prev + time.time() - self.t0

    def resume(self) -> bool:
        """Load the stage's checkpoint if there is one; True if it did."""
        if not self.ckpt_path.exists():
            print(f"[{self.work_dir.name}] no checkpoint at {self.ckpt_path}: starting fresh", flush=True)
            return False
        ck = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        for k, m in self.modules.items():
            m.load_state_dict(ck["modules"][k])
        for k, e in self.emas.items():
            e.shadow.load_state_dict(ck["emas"][k])
        self.opt.load_state_dict(ck["opt"])
        for k, o in self.aux_opts.items():
            o.load_state_dict(ck["aux_opts"][k])
        if self.sched is not None and ck.get("sched") is not None:
            self.sched.load_state_dict(ck["sched"])
        self.step_i, self.elapsed_prev = ck["step"], ck["elapsed"]
        random.setstate(ck["py_rng"])
        torch.set_rng_state(ck["torch_rng"])
        if torch.cuda.is_available() and ck.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        print(f"[{self.work_dir.name}] resumed at step {self.step_i} ({self.elapsed_prev:.0f} s)", flush=True)
        return True

    def save(self) -> None:
        ck = {
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "emas": {k: e.shadow.state_dict() for k, e in self.emas.items()},
            "opt": self.opt.state_dict(),
            "aux_opts": {k: o.state_dict() for k, o in self.aux_opts.items()},
            "sched": None if self.sched is None else self.sched.state_dict(),
            "step": self.step_i,
            "elapsed": self.elapsed,
            "py_rng": random.getstate(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(ck, tmp)
        tmp.replace(self.ckpt_path)
        self.last_ckpt = time.time()

    def running(self) -> bool:
        """True while steps and time budget remain (a resumed run counts time already spent)."""
        return self.step_i < self.steps and self.elapsed < self.budget_s

    def update(self, loss: torch.Tensor, parts: dict[str, float] | None = None, clip: float = 1.0) -> None:
        """Backward, clip, optimiser step, EMA, logging and periodic checkpoint."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.opt.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, clip)
        if self.cosine:
            frac = min(1.0, max(self.elapsed / self.budget_s, self.step_i / self.steps))
            for g, base in zip(self.opt.param_groups, self.base_lrs, strict=True):
                g["lr"] = base * (0.1 + 0.45 * (1.0 + math.cos(math.pi * frac)))
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        self.step_i += 1
        for k, e in self.emas.items():
            e.update(self.modules[k], self.step_i)
        parts = dict(parts or {})
        parts["loss"] = float(loss.detach())
        for k, v in parts.items():
            self.acc.setdefault(k, []).append(v)
        if self.step_i % self.log_every == 0 or time.time() - self.last_log > 60 or not self.running():
            self.last_log = time.time()
            self.last_losses = {k: float(np.mean(v)) for k, v in self.acc.items()}
            self.acc = {}
            row = {"step": self.step_i, "elapsed_s": round(self.elapsed, 1), **self.last_losses}
            with open(self.work_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"[{self.work_dir.name}] " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                        for k, v in row.items()), flush=True)
            sys.stdout.flush()
        if time.time() - self.last_ckpt > self.ckpt_every_s:
            self.save()

    def final_losses(self) -> dict[str, float]:
        if self.acc:
            self.last_losses = {k: float(np.mean(v)) for k, v in self.acc.items()}
        return self.last_losses
