"""EDM preconditioning, schedules, samplers and guidance against exact answers."""

import math

import pytest
import torch

from dragnuwa.diffusion.guidance import MultiCondGuider, NoGuidance
from dragnuwa.diffusion.preconditioning import EDMDenoiser, edm_loss_weight
from dragnuwa.diffusion.samplers import SAMPLERS, get_sampler
from dragnuwa.diffusion.schedules import KarrasDiscretization, LogLinearDiscretization, karras_sigmas
from dragnuwa.errors import UserError

MU, S = 1.5, 0.3


def gaussian_denoiser(x, sigma):
    """Exact D(x; sigma) = E[x0 | x] for data N(MU, S^2)."""
    return (MU * sigma ** 2 + x * S ** 2) / (sigma ** 2 + S ** 2)


# A 2-D mixture of two isotropic Gaussians: weights, means, stds.
MIX_W = torch.tensor([0.3, 0.7], dtype=torch.float64)
MIX_MU = torch.tensor([[-1.0, 0.5], [1.5, -0.5]], dtype=torch.float64)
MIX_S = torch.tensor([0.25, 0.4], dtype=torch.float64)


def mixture_denoiser(x, sigma):
    """Exact E[x0 | x0 + sigma n] for the mixture: responsibilities under the noised components
    N(mu_k, (s_k^2 + sigma^2) I) times each component's Gaussian posterior mean."""
    x64, s2 = x.double(), float(sigma) ** 2
    var = MIX_S ** 2 + s2  # [K]
    d2 = ((x64[:, None, :] - MIX_MU[None]) ** 2).sum(-1)  # [N, K]
    logp = MIX_W.log() - d2 / (2 * var) - torch.log(var)  # 2-D: normaliser var^(d/2) = var
    r = torch.softmax(logp, dim=1)
    post = (MIX_MU[None] * s2 + x64[:, None, :] * (MIX_S ** 2)[None, :, None]) / var[None, :, None]
    return (r[..., None] * post).sum(1).to(x.dtype)


def test_karras_sigmas_follow_eq5():
    s = karras_sigmas(10, 0.002, 80.0, 7.0)
    assert s.shape == (11,) and s[-1] == 0
    assert math.isclose(s[0].item(), 80.0, rel_tol=1e-6) and math.isclose(s[9].item(), 0.002, rel_tol=1e-5)
    i = torch.arange(10, dtype=torch.float64)
    eq5 = (80 ** (1 / 7) + i / 9 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert torch.allclose(s[:10].double(), eq5, rtol=1e-6)
    assert torch.equal(KarrasDiscretization()(10), s)
    ll = LogLinearDiscretization(0.01, 10.0)(4)
    assert torch.allclose(ll[:4].log10(), torch.tensor([1.0, 0.0, -1.0, -2.0]), atol=1e-6) and ll[-1] == 0
    with pytest.raises(ValueError):
        karras_sigmas(0)


def test_preconditioning_matches_table1():
    seen = {}

    def F(x_in, c_noise, cond):
        seen.update(x_in=x_in, c_noise=c_noise)
        return torch.ones_like(x_in)

    D = EDMDenoiser(F, sigma_data=0.5)
    x = torch.randn(3, 2, 4, 5, 5)  # [B, T, C, h, w]
    sigma = torch.tensor([0.1, 1.0, 10.0])
    out = D(x, sigma, None)
    s = sigma.view(-1, 1, 1, 1, 1)
    c_skip, c_out, c_in = 0.25 / (s ** 2 + 0.25), s * 0.5 / (s ** 2 + 0.25).sqrt(), 1 / (s ** 2 + 0.25).sqrt()
    assert torch.allclose(out, c_skip * x + c_out, atol=1e-6)
    assert torch.allclose(seen["x_in"], c_in * x, atol=1e-6)
    assert torch.allclose(seen["c_noise"], sigma.log() / 4)
    # A scalar sigma is broadcast over the batch.
    assert torch.allclose(D(x, torch.tensor(1.0), None), D(x, torch.ones(3), None))


def test_preconditioning_identities():
    D = EDMDenoiser(lambda x, c, cond: torch.zeros_like(x), sigma_data=0.5)
    x = torch.randn(3, 5)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    expected = 0.25 / (sigma ** 2 + 0.25)
    assert torch.allclose(D(x, sigma, None), expected[:, None] * x)  # F = 0: D = c_skip x
    D2 = EDMDenoiser(lambda x, c, cond: torch.randn_like(x), sigma_data=0.5)
    assert torch.allclose(D2(x, torch.full((3,), 1e-5), None), x, atol=1e-4)  # sigma -> 0: D(x) -> x


def test_loss_of_the_exact_denoiser_is_one_and_sigma_is_lognormal():
    """For data with std sigma_data the Bayes denoiser's error is sigma^2 sd^2 / (sigma^2 + sd^2)
    per element, and lambda(sigma) times that is exactly 1: the weighting of Table 1."""
    sd, mu = 0.5, 0.7
    D_exact = lambda x, sigma: (mu * sigma ** 2 + x * sd ** 2) / (sigma ** 2 + sd ** 2)  # noqa: E731

    def F(x_in, c_noise, cond):  # invert the preconditioning so that D is the exact denoiser
        sigma = (4 * c_noise).exp().view(-1, 1)
        x = x_in * (sigma ** 2 + sd ** 2).sqrt()
        c_skip, c_out = sd ** 2 / (sigma ** 2 + sd ** 2), sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
        return (D_exact(x, sigma) - c_skip * x) / c_out

    D = EDMDenoiser(F, sigma_data=sd)
    g = torch.Generator().manual_seed(0)
    x0 = (mu + sd * torch.randn(4000, 64, generator=g, dtype=torch.float64))
    mean, per, sigma = D.loss(x0, None, generator=g, per_sample=True)
    assert per.shape == (4000,) and abs(mean.item() - 1.0) < 0.01, mean.item()
    assert torch.allclose(edm_loss_weight(torch.tensor([0.5]), 0.5), torch.tensor([8.0]))
    assert abs(sigma.log().mean().item() + 1.2) < 0.06 and abs(sigma.log().std().item() - 1.2) < 0.05


def test_motion_init_loss_noises_along_the_sdedit_path():
    """Guided samples see x0 + (sigma / sigma_start)(guide - x0) + sigma n with ln sigma uniform over
    [ln(sigma_start / 20), ln sigma_start]; the others plain x0 + sigma n with log-normal sigma."""
    sd, sigma_start, seen = 0.5, 1.5, {}

    def F(x_in, c_noise, cond):  # record the noisy input D was given
        sigma = (4 * c_noise).exp().view(-1, 1)
        seen["x"] = x_in * (sigma ** 2 + sd ** 2).sqrt()
        return torch.zeros_like(x_in)

    D = EDMDenoiser(F, sigma_data=sd)
    g = torch.Generator().manual_seed(0)
    x0 = torch.zeros(400, 4000, dtype=torch.float64)
    guide = torch.ones_like(x0)  # the guide differs from the data by 1 everywhere
    guided = torch.arange(400) % 2 == 0
    _, _, sigma = D.loss(x0, None, generator=g, per_sample=True, guide=guide, guided=guided, sigma_start=sigma_start)
    x = seen["x"]
    share = torch.where(guided, sigma / sigma_start, torch.zeros_like(sigma))
    # Each row's mean is the guide's share plus the mean of 4000 noise draws (std sigma / 63): 5 std.
    assert ((x.mean(1) - share.double()).abs() < 5 * sigma.double() / math.sqrt(4000)).all()
    assert torch.allclose(x.std(1), sigma.double(), rtol=0.05)
    s_g = sigma[guided].log()
    assert s_g.min() >= math.log(sigma_start / 20) - 1e-6 and s_g.max() <= math.log(sigma_start) + 1e-6
    assert abs(s_g.mean().item() - math.log(sigma_start / math.sqrt(20))) < 0.2
    assert sigma[~guided].max() > sigma_start  # the unguided keep the full log-normal range


def test_weighted_loss_is_normalised_per_sample():
    """``weight`` scales each element's squared error, normalised per sample: a uniform weight of 3
    leaves the loss as it is, and a weight that is 0 on half the elements scores the other half."""
    sd, seen = 0.5, {}

    def F(x_in, c_noise, cond):  # F = 0, so D = c_skip x: the error of every element is known
        sigma = (4 * c_noise).exp().view(-1, 1)
        seen["x"], seen["sigma"] = x_in * (sigma ** 2 + sd ** 2).sqrt(), sigma
        return torch.zeros_like(x_in)

    D = EDMDenoiser(F, sigma_data=sd)
    x0 = torch.cat([torch.zeros(64, 100), torch.full((64, 100), 2.0)], 1).double()

    def run(weight):
        return D.loss(x0, None, generator=torch.Generator().manual_seed(3), per_sample=True, weight=weight)[1]

    plain = run(None)
    assert torch.allclose(run(torch.full_like(x0, 3.0)), plain)
    first = torch.zeros_like(x0)
    first[:, :100] = 1
    lo, hi = run(first), run(1 - first)
    sigma = seen["sigma"]
    sq = (sd ** 2 / (sigma ** 2 + sd ** 2) * seen["x"] - x0) ** 2
    lam = edm_loss_weight(sigma[:, 0], sd).double()
    # (the loss is computed in float32)
    assert torch.allclose(lo.double(), lam * sq[:, :100].mean(1), rtol=1e-4)
    assert torch.allclose(hi.double(), lam * sq[:, 100:].mean(1), rtol=1e-4)
    assert torch.allclose((lo + hi) / 2, plain) and (hi > lo).float().mean() > 0.9


def test_edm_loss_falls_on_a_toy_problem():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.SiLU(), torch.nn.Linear(64, 2))
    D = EDMDenoiser(lambda x, c, cond: net(torch.cat([x, c[:, None]], 1)), sigma_data=0.5)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(300):
        x0 = torch.randn(256, 2, generator=g) * 0.1 + torch.tensor([0.5, -0.3])
        loss = D.loss(x0, None, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:30]) / 30, sum(losses[-30:]) / 30
    assert last < 0.5 * first, (first, last)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_recover_a_known_gaussian(name):
    g = torch.Generator().manual_seed(0)
    sigmas = karras_sigmas(40)
    x = torch.randn(4000, generator=g) * sigmas[0]
    out = SAMPLERS[name](gaussian_denoiser, x, sigmas)
    assert abs(out.mean().item() - MU) < 0.02
    limit = 0.15 if name == "euler" else 0.03  # first-order Euler is coarser at 40 steps
    assert abs(out.std().item() - S) / S < limit


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_recover_a_2d_gaussian_mixture(name):
    g = torch.Generator().manual_seed(2)
    sigmas = karras_sigmas(32)
    x = torch.randn(4000, 2, generator=g) * sigmas[0]
    out = SAMPLERS[name](mixture_denoiser, x, sigmas).double()
    k = ((out[:, None] - MIX_MU[None]) ** 2).sum(-1).argmin(1)  # nearest component (they are 2.7 apart)
    # Measured at 32 steps: 2nd order 0.004 mean / <=6.4% std error (2-3% of it is the finite
    # sample: 200 steps give 3.1%); Euler 0.058 / 8.6%.
    mean_tol, std_tol = (0.08, 0.12) if name == "euler" else (0.02, 0.08)
    for j in range(2):
        pts = out[k == j]
        assert abs(len(pts) / len(out) - MIX_W[j].item()) < 0.03
        assert (pts.mean(0) - MIX_MU[j]).abs().max() < mean_tol
        assert ((pts.std(0) - MIX_S[j]).abs() / MIX_S[j]).max() < std_tol


def _ode_errors(steps):
    sigmas = karras_sigmas(steps)
    x = torch.randn(4000, generator=torch.Generator().manual_seed(1)) * sigmas[0]
    exact = MU + (x - MU) * S / (sigmas[0] ** 2 + S ** 2) ** 0.5  # the ODE's exact end point
    return {n: (SAMPLERS[n](gaussian_denoiser, x, sigmas) - exact).abs().mean().item() for n in SAMPLERS}


def test_second_order_samplers_beat_euler_with_the_right_order():
    # Measured mean |error| at 24 / 48 steps: euler 0.030 / 0.015, heun 0.0082 / 0.0019,
    # dpmpp_2m 0.0091 / 0.0020: order 1 vs order 2.
    e24, e48 = _ode_errors(24), _ode_errors(48)
    assert e24["heun"] < 0.4 * e24["euler"] and e24["dpmpp_2m"] < 0.4 * e24["euler"], e24
    assert 1.7 < e24["euler"] / e48["euler"] < 2.3
    assert e24["heun"] / e48["heun"] > 3.5 and e24["dpmpp_2m"] / e48["dpmpp_2m"] > 3.5, (e24, e48)


def test_sampler_callback_reports_every_step():
    calls = []
    sigmas = karras_sigmas(7)
    x = torch.randn(10) * sigmas[0]
    for name in SAMPLERS:
        calls.clear()
        SAMPLERS[name](gaussian_denoiser, x, sigmas, callback=lambda i, n, x, d: calls.append((i, n, x.shape)))
        assert [c[0] for c in calls] == list(range(7)) and {c[1] for c in calls} == {7}


def test_unknown_sampler():
    assert get_sampler("heun") is SAMPLERS["heun"]
    with pytest.raises(UserError, match="unknown sampler 'ddim_magic'.*euler"):
        get_sampler("ddim_magic")


# ----------------------------------------------------------------------------- guidance


def _real_cond(b=2):
    from dragnuwa.models.dragnuwa import Cond

    g = torch.Generator().manual_seed(0)
    return Cond(torch.randn(b, 3, 4, generator=g) + 1, torch.ones(b, 3, dtype=torch.bool),
                torch.randn(b, 2, 4, 4, generator=g) + 1, torch.randn(b, 5, 2, 8, 8, generator=g) + 1)


class _LinearD:
    """A stand-in D, linear in each condition, counting its forward passes and batch sizes."""

    def __init__(self):
        self.batches = []

    def __call__(self, x, sigma, cond):
        self.batches.append(x.shape[0])
        assert sigma.shape == (x.shape[0],)
        t = cond.text.sum((1, 2)).view(-1, 1, 1, 1, 1)
        i = cond.image.sum((1, 2, 3)).view(-1, 1, 1, 1, 1)
        m = cond.maps.sum((1, 2, 3, 4)).view(-1, 1, 1, 1, 1)
        return x * sigma.view(-1, 1, 1, 1, 1) + 1.0 * t + 10.0 * i + 100.0 * m


def test_guidance_scales_one_is_the_single_conditional_pass():
    cond, D = _real_cond(), _LinearD()
    x = torch.randn(2, 5, 2, 4, 4)
    out = MultiCondGuider(1.0, 1.0)(D, cond)(x, torch.tensor(0.7))
    assert D.batches == [2]  # one pass, no extra null passes
    assert torch.equal(out, D(x, torch.full((2,), 0.7), cond))
    assert torch.equal(NoGuidance()(D, cond)(x, torch.tensor(0.7)), out)


def test_guidance_composition_with_the_real_cond():
    cond, D = _real_cond(), _LinearD()
    x = torch.randn(2, 5, 2, 4, 4)
    sig = torch.tensor(0.7)
    on, off = torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool)
    d_img = D(x, sig.expand(2), cond.drop(off, on, off))
    d_txt = D(x, sig.expand(2), cond.drop(on, on, off))
    d_all = D(x, sig.expand(2), cond)
    D.batches.clear()
    guided = MultiCondGuider(2.0, 3.0)(D, cond)(x, sig)
    assert D.batches == [6]  # the three passes batched into one forward
    assert torch.allclose(guided, d_img + 2.0 * (d_txt - d_img) + 3.0 * (d_all - d_txt), atol=1e-4)
    assert torch.allclose(MultiCondGuider(0.0, 0.0)(D, cond)(x, sig), d_img, atol=1e-5)  # image only
    assert torch.allclose(MultiCondGuider(1.0, 0.0)(D, cond)(x, sig), d_txt, atol=1e-5)  # no trajectory
    assert not torch.allclose(d_img, d_txt) and not torch.allclose(d_txt, d_all)  # the check can fail


class _ToyCond:
    """A generic condition (only drop/cat): one number per control."""

    def __init__(self, v):
        self.v = v

    def drop(self, keep_text, keep_image, keep_traj):
        return _ToyCond(self.v * torch.stack([keep_text, keep_image, keep_traj], 1).float())

    @staticmethod
    def cat(cs):
        return _ToyCond(torch.cat([c.v for c in cs]))


def test_guidance_is_generic_and_exact_on_numbers():
    def D(x, sigma, cond):
        return x + cond.v @ torch.tensor([[1.0], [10.0], [100.0]])

    cond, x, sigma = _ToyCond(torch.ones(1, 3)), torch.zeros(1, 1), torch.tensor(1.0)
    assert MultiCondGuider(1.0, 1.0)(D, cond)(x, sigma).item() == 111.0
    assert MultiCondGuider(0.0, 0.0)(D, cond)(x, sigma).item() == 10.0
    assert MultiCondGuider(2.0, 3.0)(D, cond)(x, sigma).item() == 10.0 + 2 * 1 + 3 * 100


def test_guided_sampling_end_to_end_on_a_gaussian():
    """Guidance + EDMDenoiser + sampler: F = 0 makes D = c_skip x, the exact denoiser of data
    N(0, sigma_data^2), whose ODE maps x(sigma_max) to x sigma_data / sqrt(sigma_max^2 + sigma_data^2)."""
    D = EDMDenoiser(lambda x, c, cond: torch.zeros_like(x), sigma_data=0.5)
    denoise = MultiCondGuider(2.0, 1.5)(D, _real_cond(1))
    sigmas = karras_sigmas(64)
    x = torch.randn(1, 5, 2, 4, 4, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    out = SAMPLERS["heun"](denoise, x, sigmas)
    exact = x * 0.5 / (sigmas[0] ** 2 + 0.25).sqrt()
    assert (out - exact).abs().max() < 0.01 * exact.abs().max()
