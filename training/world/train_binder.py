"""Contrastive training of the world's ImageBind-architecture binder.

The binder cuts 4-s clips into back-to-back 0.5-s windows (4 frames each at 8 fps):
events are >= 0.5 s apart, so a window holds at most about one event, and per-window
embeddings can carry its timing. Losses (InfoNCE, learnable temperature):

- video-audio per window: window i of a clip's video must pick window i of the same
  clip's audio among every window of the batch (so other windows of the same clip are
  negatives) plus hard negatives: the same clip's audio shifted by 1-3 video frames;
- video-text and audio-text on pooled embeddings, with every caption that the clip
  satisfies counted as a positive (short captions such as "a ball" match many clips).

With ``--adv-steps K`` the video-audio term also gets adversarial negatives, as guidance
would make them: the shifted audio pushed by K signed-gradient steps (within +-``--adv-eps``
in the model's normalised input) towards the video window's embedding, and likewise the
video shifted by 1-3 frames pushed towards the audio window's. A binder that must rank
these below the true pair cannot be satisfied by small input changes, only by the events
themselves (guidance otherwise finds such changes: docs/world.md). ``--adv-latent-steps K``
adds the negatives V2A guidance itself would make: another clip's audio latent (the world
audio VAE's, of ``--models``) moved by K sign steps of 0.1 towards the video windows'
embedding through the VAE decoder and the vocoder-free mel path. ``--grad-align W`` adds W
times a term on the binder's *input gradient*, the signal guidance follows: at points
between the shifted and the true audio of a window, the gradient of the video-audio cosine
must point towards the true audio (cosine with the difference, over the whole fbank and
over its per-frame sums; double backward); half the windows start instead from the clip's
average window (events blurred over every position, as in an early prediction).
``--grad-align-video W`` does the same for the video input, towards the true video from
the shifted one. ``--init DIR`` starts from a trained binder (fine-tuning) instead of
random weights.
"""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from avbridge.errors import AvbridgeError
from avbridge.models.binders.base import ClipSpec
from avbridge.models.binders.imagebind import ImageBindBinder, ImageBindConfig
from avbridge.models.generators.base import MediaSpec
from avbridge.world.scene import WORLD
from training.world.train_data import ClipSet, load_clips, sample_caption
from training.world.train_loop import Loop

BINDER_CLIPS = ClipSpec(duration_s=0.5, count=None, frames_per_clip=4)


def binder_config() -> ImageBindConfig:
    """The "tiny-32" preset: 32x32 frames, 4 frames per window, 64-bin fbank of 0.5 s."""
    return ImageBindConfig.preset("tiny-32")


def _info_nce(
    q: torch.Tensor, k: torch.Tensor, scale: torch.Tensor,
    extra_k: torch.Tensor | None = None, extra_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Row i of q matches row i of k; extra_k rows are negatives for the q -> k direction
    only, extra_q rows for k -> q."""
    keys = k if extra_k is None else torch.cat([k, extra_k])
    queries = q if extra_q is None else torch.cat([q, extra_q])
    target = torch.arange(len(q), device=q.device)
    a = F.cross_entropy(scale * q @ keys.t(), target)
    b = F.cross_entropy(scale * k @ queries.t(), target)
    return (a + b) / 2


def adversarial_inputs(
    binder: ImageBindBinder, modality: str, x: torch.Tensor, target: torch.Tensor, eps: float, steps: int
) -> torch.Tensor:
    """Model inputs ``x`` (N, ...) moved by ``steps`` signed-gradient steps, within +-``eps``,
    to raise their embedding's cosine with the unit rows of ``target`` (N, D)."""
    target = target.detach()
    delta = torch.zeros_like(x, requires_grad=True)
    for _ in range(steps):
        e = F.normalize(binder.model.embed(modality, x + delta), dim=-1)
        (g,) = torch.autograd.grad((e * target).sum(), delta)
        delta = (delta + 2.5 * eps / steps * g.sign()).clamp(-eps, eps).detach().requires_grad_(True)
    return (x + delta).detach()


#: Per modality: the model input's time axis (the others are summed for the per-frame profile).
_TIME_AXIS = {"audio": -1, "vision": 2}  # (N, 1, bins, frames), (N, 3, T, H, W)


def gradient_alignment_loss(
    binder: ImageBindBinder, modality: str, x_from: torch.Tensor, x_to: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """How far the input gradient of the ``modality`` embedding's cosine with ``target`` (N, D),
    taken at model inputs ``x_from``, is from pointing at the paired inputs ``x_to``: mean
    over N of 1 - cosine with ``x_to - x_from``, plus the same for both summed over all but
    the time axis (the change per frame, which places events). Differentiable in the
    binder's weights (double backward)."""
    x = x_from.detach().requires_grad_(True)
    with sdpa_kernel(SDPBackend.MATH):  # the fused CPU attention has no double backward
        e = F.normalize(binder.model.embed(modality, x), dim=-1)
        (g,) = torch.autograd.grad((e * target.detach()).sum(), x, create_graph=True)
    toward = (x_to - x_from).detach()
    full = F.cosine_similarity(g.flatten(1), toward.flatten(1), dim=1)
    axis = _TIME_AXIS[modality] % x.ndim
    others = [d for d in range(1, x.ndim) if d != axis]
    profile = F.cosine_similarity(g.sum(others), toward.sum(others), dim=1)
    return (2 - full - profile).mean()


@torch.no_grad()
def timing_accuracy(
    binder: ImageBindBinder, video: torch.Tensor, audio: torch.Tensor, truths: list[dict]
) -> float:
    """Among the windows of one clip that hold an event, how often the video window's
    nearest audio window (same clip) is the right one."""
    v = binder.embed_video(video, WORLD.fps).clips
    a = binder.embed_audio(audio, WORLD.sample_rate).clips
    sims = v @ a.transpose(1, 2)  # (B, C, C)
    hit = tot = 0
    per = int(BINDER_CLIPS.duration_s * WORLD.fps)
    for b, t in enumerate(truths):
        for w in sorted({f // per for f in t["event_frames"]}):
            tot += 1
            hit += int(int(sims[b, w].argmax()) == w)
    return hit / max(tot, 1)


class LatentAdversary:
    """Guidance-like negatives: sign steps on audio latents towards video embeddings."""

    def __init__(self, models_dir: Path, clips: ClipSet, device: torch.device, steps: int,
                 step_size: float = 0.1):
        from avbridge.models.generators.audioldm import AudioLDMGenerator
        from training.world.common import _mels

        self.gen = AudioLDMGenerator.from_pretrained(models_dir / "audioldm", device=device)
        self.spec = MediaSpec(duration_s=WORLD.duration_s)
        self.steps, self.step_size = steps, step_size
        with torch.no_grad():
            mels = _mels(clips, device).unsqueeze(1)
            self.latents = torch.cat([self.gen.encode_mel(m) for m in mels.split(64)])

    def embed(self, binder: ImageBindBinder, z: torch.Tensor) -> torch.Tensor:
        """Per-window audio embeddings (B, C, D) of latents ``z`` via the mel path."""
        return binder.embed_audio_features(self.gen.decode_features(z, self.spec)).clips

    def negatives(self, binder: ImageBindBinder, idx: list[int], target: torch.Tensor) -> torch.Tensor:
        """Clip ``idx[i + 1]``'s latent pushed towards ``target[i]`` (B, C, D); embedded (B, C, D)."""
        z = self.latents[idx[1:] + idx[:1]].clone()
        target = target.detach()
        for _ in range(self.steps):
            z.requires_grad_(True)
            (g,) = torch.autograd.grad((self.embed(binder, z) * target).sum(), z)
            z = (z + self.step_size * g.sign()).detach()
        return self.embed(binder, z)


def stage_binder(args, stage: str = "binder") -> dict:
    from training.world.common import _compat, _finish, soft_info_nce

    dev = args.device
    if args.init is not None:
        binder = ImageBindBinder.from_pretrained(args.init)
        if binder.clips != BINDER_CLIPS:
            raise AvbridgeError(f"--init {args.init}: binder clips {binder.clips}, "
                                f"this stage trains {BINDER_CLIPS}")
    else:
        binder = ImageBindBinder.from_config(binder_config(), seed=args.seed, clips=BINDER_CLIPS)
    binder = binder.to(dev).train()
    clips = load_clips("train", args.clips)
    video = clips.video.movedim(-1, 2).contiguous()  # (N, T, 3, H, W) uint8
    audio = clips.audio
    binder.model.requires_grad_(True)
    log_scale = torch.nn.Parameter(torch.tensor(math.log(14.0), device=dev))
    opt = torch.optim.AdamW([*binder.model.parameters(), log_scale], lr=args.lr, weight_decay=0.05)
    loop = Loop.from_args(args, {"binder": binder.model}, opt)
    rng = random.Random(args.seed)
    spf = WORLD.samples_per_frame
    adversary = None
    if args.adv_latent_steps > 0:
        adversary = LatentAdversary(args.models, clips, dev, args.adv_latent_steps)
    while loop.running():
        idx = torch.randint(0, len(clips), (args.batch,)).tolist()
        v_in = video[idx].to(dev)
        a_in = audio[idx].to(dev)
        shifts = [rng.choice([-3, -2, -1, 1, 2, 3]) * spf for _ in idx]
        a_shift = torch.stack([torch.roll(a_in[i], s) for i, s in enumerate(shifts)])
        ev = binder.embed_video(v_in, WORLD.fps)
        ea = binder.embed_audio(torch.cat([a_in, a_shift]), WORLD.sample_rate)
        ea_true, ea_shift = ea.clips[: len(idx)], ea.clips[len(idx):]
        neg_a, neg_v = ea_shift.flatten(0, 1), None
        # Model inputs of the shifted audio / video, for the adversary and the gradient terms.
        xa_shift = xv_shift = None
        if args.adv_steps > 0 or args.grad_align > 0:
            xa_shift = binder.preprocess_audio(a_shift, WORLD.sample_rate)
        if args.adv_steps > 0 or args.grad_align_video > 0:
            v_shift = torch.stack([torch.roll(v_in[i], s // spf, dims=0) for i, s in enumerate(shifts)])
            xv_shift = binder.preprocess_video(v_shift, WORLD.fps).flatten(0, 1)
        if args.adv_steps > 0:
            xa = adversarial_inputs(binder, "audio", xa_shift.flatten(0, 1), ev.clips.flatten(0, 1),
                                    args.adv_eps, args.adv_steps)
            xv = adversarial_inputs(binder, "vision", xv_shift, ea_true.flatten(0, 1),
                                    2 * args.adv_eps, args.adv_steps)
            neg_a = torch.cat([neg_a, F.normalize(binder.model.embed("audio", xa), dim=-1)])
            neg_v = F.normalize(binder.model.embed("vision", xv), dim=-1)
        l_ga = torch.zeros((), device=dev)
        if args.grad_align > 0:
            xt = binder.preprocess_audio(a_in, WORLD.sample_rate)
            # Start from the shifted audio, or (half the windows) from the clip's average
            # window, which has every event blurred over all positions, as an early
            # prediction does; then a point on the way to the true audio (same direction).
            avg = xt.mean(dim=1, keepdim=True).expand_as(xt)
            coin = torch.rand(*xt.shape[:2], *[1] * (xt.ndim - 2), device=dev) < 0.5
            xs, xt = torch.where(coin, avg, xa_shift).flatten(0, 1), xt.flatten(0, 1)
            lam = torch.empty(len(xs), 1, 1, 1, device=dev).uniform_(0.3, 1.0)
            l_ga = args.grad_align * gradient_alignment_loss(
                binder, "audio", lam * xs + (1 - lam) * xt, xt, ev.clips.flatten(0, 1))
        if args.grad_align_video > 0:
            xt = binder.preprocess_video(v_in, WORLD.fps).flatten(0, 1)
            lam = torch.empty(len(xt), *[1] * (xt.ndim - 1), device=dev).uniform_(0.3, 1.0)
            l_ga = l_ga + args.grad_align_video * gradient_alignment_loss(
                binder, "vision", lam * xv_shift + (1 - lam) * xt, xt, ea_true.flatten(0, 1))
        if adversary is not None:
            neg_a = torch.cat([neg_a, adversary.negatives(binder, idx, ev.clips).flatten(0, 1)])
        truths = [clips.truths[i] for i in idx]
        caps = [sample_caption(t, rng) for t in truths]
        et = binder.embed_text(caps).pooled
        scale = log_scale.exp().clamp(max=100.0)
        l_va = _info_nce(ev.clips.flatten(0, 1), ea_true.flatten(0, 1), scale, neg_a, neg_v)
        l_vt = soft_info_nce(scale * et @ ev.pooled.t(), _compat(caps, truths))
        l_at = soft_info_nce(scale * et @ ea.pooled[: len(idx)].t(), _compat(caps, truths))
        loss = l_va + 0.5 * (l_vt + l_at) + l_ga
        terms = {"va": l_va.item(), "vt": l_vt.item(), "at": l_at.item()}
        if args.grad_align > 0 or args.grad_align_video > 0:
            terms["ga"] = l_ga.item()
        loop.update(loss, terms)
    binder.eval()
    val = load_clips("val", 64)
    acc = timing_accuracy(binder, val.video.movedim(-1, 2).to(dev), val.audio.to(dev), val.truths)
    binder.to("cpu").save_pretrained(args.models / "binder")
    extra = {"val_event_window_acc": round(acc, 4), "clips_spec": dataclasses.asdict(BINDER_CLIPS)}
    if args.adv_steps > 0:
        extra.update(adv_steps=args.adv_steps, adv_eps=args.adv_eps)
    if args.adv_latent_steps > 0:
        extra.update(adv_latent_steps=args.adv_latent_steps)
    if args.grad_align > 0 or args.grad_align_video > 0:
        extra.update(grad_align=args.grad_align, grad_align_video=args.grad_align_video)
    if args.init is not None:
        extra["init"] = str(args.init)
    return _finish(args, loop, stage, extra)
