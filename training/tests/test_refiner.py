"""Tests of the low-band refiner experiment (training/refiner). Skipped without torch."""
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "refiner"))
import refiner  # noqa: E402


@pytest.mark.parametrize("low_delay", [0, 64])
def test_the_untrained_refiner_returns_the_estimate(low_delay):
    torch.manual_seed(0)
    model = refiner.Refiner(low_delay=low_delay)
    x, a = torch.randn(2, 16000), torch.randn(2, 16000)
    assert torch.allclose(model(x, a), a, atol=1e-5)


def test_low_delay_windows_reconstruct_and_look_ahead_at_most_two_hops():
    m = 64
    wa, ws = refiner.asymmetric_windows(refiner.FFT, m)
    prod = wa * ws
    # analysis x synthesis is a Hann of 2m on the frame's tail, which overlap-adds to one at hop m
    assert torch.all(prod[: refiner.FFT - 2 * m] == 0)
    assert torch.allclose(prod[-2 * m:-m] + prod[-m:], torch.ones(m), atol=1e-6)
    model = refiner.Refiner(low_delay=m)
    torch.nn.init.normal_(model.out.weight, std=0.1)
    x = torch.randn(1, 8000, requires_grad=True)
    a = torch.randn(1, 8000, requires_grad=True)
    n = 4000
    model(x, a)[0, n].backward()
    reach = (x.grad.abs() + a.grad.abs())[0].nonzero().max().item()
    assert n + m <= reach < n + 2 * m  # the latency is under 2m samples (8 ms at 16 kHz), not 0


def test_spectral_loss_has_finite_gradients_on_silence():
    model = refiner.Refiner()
    torch.nn.init.normal_(model.out.weight, std=0.1)
    x = torch.zeros(1, 4000)
    x[0, 2000:] = torch.randn(2000)
    z = model(x, x * 0.5)
    loss = refiner.spec_loss(model, x * 0.5)
    loss.backward()
    assert torch.isfinite(z).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
