"""Flow matching for the decoder, apart from the network: the training loss and the sampler.

Rectified flow as FLUX uses it: x_t = (1 - t) x_0 + t * noise, velocity v = noise - x_0, sampling integrates from
t = 1 (noise) to t = 0 with diffusers' `FlowMatchEulerDiscreteScheduler`. Training draws t from a logit-normal
(SD3/FLUX) and regresses the velocity.

What the network outputs is `DecoderConfig.prediction`. FLUX.1-dev predicts the velocity (paper preset). The tiny
pixel-space decoder predicts the clean sample x_0 and the velocity is derived, v = (x_t - x_0) / t (t clamped at
T_MIN), as in "Back to Basics: Let Denoising Generative Models Denoise" (Li & He, 2025): a 16x16x3 pixel patch has
768 numbers and the network is 256 wide, so a velocity head would have to carry 768-d noise through a 256-d
bottleneck, while clean patches of flat colours and glyphs lie near a low-dimensional set. Decoder-side guidance, when asked for, is combined in `velocity` and nowhere else; it needs a
network trained with condition dropout (`cond_drop` in the decoder stage), whose unconditional input is all zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler

from xomni.decoder.flux import SemanticFlux


T_MIN = 0.05


def predict_velocity(net: SemanticFlux, x: torch.Tensor, t: torch.Tensor, semantic: torch.Tensor,
                     prior: torch.Tensor | None = None) -> torch.Tensor:
    """The network's output as a velocity, whatever it predicts. x (B, N, P), t (B,); prior: the network's
    `prior_patches(semantic)` if the caller has already computed them."""
    out = net(x, t, semantic, prior)
    if net.config.prediction == "velocity":
        return out
    return (x - out) / t.clamp(min=T_MIN)[:, None, None]


def _randn(shape, generator: torch.Generator | None, device=None, dtype=None) -> torch.Tensor:
    """Gaussian noise drawn where the generator lives (a CPU generator seeds a GPU run too), then moved to `device`:
    the same numbers on any device."""
    at = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=at, dtype=dtype).to(device)


def sample_t(batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Logit-normal noise levels in (0, 1), shape (B,)."""
    return torch.sigmoid(_randn(batch, generator, device))


def flow_matching_loss(net: SemanticFlux, x0: torch.Tensor, semantic: torch.Tensor,
                       generator: torch.Generator | None = None, prior: torch.Tensor | None = None) -> torch.Tensor:
    """x0 (B, N, P) clean patches in [-1, 1]; semantic (B, h, w, Ds). Mean squared velocity error."""
    B = x0.shape[0]
    t = sample_t(B, generator, x0.device)  # B
    noise = _randn(x0.shape, generator, x0.device, x0.dtype)
    xt = (1 - t)[:, None, None] * x0 + t[:, None, None] * noise  # B N P
    return F.mse_loss(predict_velocity(net, xt, t, semantic, prior).float(), noise - x0)  # float32 under autocast


def velocity(net: SemanticFlux, x: torch.Tensor, t: torch.Tensor, semantic: torch.Tensor, guidance: float) -> torch.Tensor:
    """The velocity the sampler follows; classifier-free guidance on the semantic condition lives here only."""
    v = predict_velocity(net, x, t, semantic)
    if guidance == 1.0:
        return v
    v_uncond = predict_velocity(net, x, t, torch.zeros_like(semantic))
    return v_uncond + guidance * (v - v_uncond)


def initial_noise(shape: tuple[int, ...], generator: torch.Generator | list[torch.Generator] | None,
                  device=None, dtype=None) -> torch.Tensor:
    """Gaussian noise of `shape`; with a list of generators (diffusers' convention), one per row, so that a row's
    noise does not depend on which other rows share its batch."""
    if not isinstance(generator, (list, tuple)):
        return _randn(shape, generator, device, dtype)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
    return torch.cat([_randn((1, *shape[1:]), g, device, dtype) for g in generator])


@torch.no_grad()
def sample(net: SemanticFlux, semantic: torch.Tensor, steps: int = 20,
           generator: torch.Generator | list[torch.Generator] | None = None,
           guidance: float = 1.0, shift: float = 1.0) -> torch.Tensor:
    """Semantic embeddings (B, h, w, Ds) -> clean patches (B, h*r * w*r, P). generator: one, or one per row."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    cfg = net.config
    B, h, w, _ = semantic.shape
    n = h * cfg.ratio * w * cfg.ratio
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(steps, device=semantic.device)
    x = initial_noise((B, n, cfg.patch_dim), generator, semantic.device, semantic.dtype)
    for timestep in scheduler.timesteps:
        t = (timestep / 1000).expand(B).to(x.dtype)
        v = velocity(net, x, t, semantic, guidance)
        x = scheduler.step(v, timestep, x).prev_sample
    return x
