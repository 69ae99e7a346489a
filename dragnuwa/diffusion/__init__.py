"""Diffusion: EDM preconditioning D(x, sigma, cond), noise schedules, samplers, guidance."""
