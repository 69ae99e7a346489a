import pytest
import torch

from dragnuwa.diffusion.guidance import MultiCondGuider
from dragnuwa.diffusion.preconditioning import EDMDenoiser
from dragnuwa.diffusion.samplers import SAMPLERS, get_sampler
from dragnuwa.diffusion.schedules import karras_sigmas
from dragnuwa.errors import UserError

MU, S = 1.5, 0.3


def gaussian_denoiser(x, sigma):
    """Exact D(x; sigma) = E[x0 | x] for data N(MU, S^2)."""
    return (MU * sigma ** 2 + x * S ** 2) / (sigma ** 2 + S ** 2)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_recover_a_known_gaussian(name):
    g = torch.Generator().manual_seed(0)
    sigmas = karras_sigmas(40)
    x = torch.randn(4000, generator=g) * sigmas[0]
    out = SAMPLERS[name](gaussian_denoiser, x, sigmas)
    assert abs(out.mean().item() - MU) < 0.02
    limit = 0.15 if name == "euler" else 0.05  # first-order Euler is coarser at 40 steps
    assert abs(out.std().item() - S) / S < limit


def test_second_order_samplers_beat_euler_at_equal_steps():
    sigmas = karras_sigmas(12)
    x = torch.randn(4000, generator=torch.Generator().manual_seed(1)) * sigmas[0]
    exact = MU + (x - MU) * S / (sigmas[0] ** 2 + S ** 2) ** 0.5  # the ODE's exact end point
    errs = {n: (SAMPLERS[n](gaussian_denoiser, x, sigmas) - exact).abs().mean().item() for n in SAMPLERS}
    assert errs["heun"] < errs["euler"] and errs["dpmpp_2m"] < errs["euler"], errs


def test_preconditioning_identities():
    D = EDMDenoiser(lambda x, c, cond: torch.zeros_like(x), sigma_data=0.5)
    x = torch.randn(3, 5)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    expected = 0.25 / (sigma ** 2 + 0.25)
    assert torch.allclose(D(x, sigma, None), expected[:, None] * x)
    D2 = EDMDenoiser(lambda x, c, cond: torch.randn_like(x), sigma_data=0.5)
    assert torch.allclose(D2(x, torch.full((3,), 1e-5), None), x, atol=1e-4)


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
    assert sum(losses[-30:]) / 30 < 0.5 * sum(losses[:30]) / 30


class _Cond:
    """Stand-in condition with the Cond interface: one number per condition."""

    def __init__(self, text, image, traj):
        self.v = torch.stack([text, image, traj], 1)

    def __len__(self):
        return len(self.v)

    def drop(self, keep_text, keep_image, keep_traj):
        keep = torch.stack([keep_text, keep_image, keep_traj], 1).float()
        c = _Cond(*self.v.T)
        c.v = self.v * keep
        return c

    @staticmethod
    def cat(cs):
        c = _Cond(*cs[0].v.T)
        c.v = torch.cat([x.v for x in cs])
        return c


def test_guidance_composition():
    def D(x, sigma, cond):  # linear in each condition so the composition is checkable
        return x + cond.v[:, 0:1] * 1.0 + cond.v[:, 1:2] * 10.0 + cond.v[:, 2:3] * 100.0

    cond = _Cond(torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([1.0]))
    x = torch.zeros(1, 1)
    sigma = torch.tensor(1.0)
    assert MultiCondGuider(1.0, 1.0)(D, cond)(x, sigma).item() == 111.0  # the plain conditional pass
    assert MultiCondGuider(0.0, 0.0)(D, cond)(x, sigma).item() == 10.0  # image only
    assert MultiCondGuider(2.0, 3.0)(D, cond)(x, sigma).item() == 10.0 + 2 * 1 + 3 * 100


def test_unknown_sampler():
    with pytest.raises(UserError, match="unknown sampler"):
        get_sampler("ddim_magic")
