import math

import pytest
import torch

from luoxia.train.optim import Muon, build_optimizers, orthogonalize, split_parameters
from luoxia.train.schedule import lr_multiplier
from tests.helpers import tiny_gpt


def test_warmup_then_cosine_to_floor():
    values = [lr_multiplier(s, 100, 10, 0.1) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))  # monotone decay
    assert lr_multiplier(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_multiplier(55, 100, 10, 0.1) == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-9)


def test_linear_decay_with_stable_phase():
    assert lr_multiplier(30, 100, 10, 0.0, "linear", decay_start=0.5) == 1.0
    assert lr_multiplier(75, 100, 10, 0.0, "linear", decay_start=0.5) == pytest.approx(0.5)
    assert lr_multiplier(50, 100, 0, 0.0, "constant") == 1.0


def test_orthogonalize_flattens_singular_values():
    torch.manual_seed(0)
    for shape in [(32, 16), (16, 48)]:
        rows, cols = shape
        # singular values spread over two orders of magnitude
        u, _ = torch.linalg.qr(torch.randn(rows, rows))
        v, _ = torch.linalg.qr(torch.randn(cols, cols))
        k = min(shape)
        matrix = u[:, :k] @ torch.diag(torch.logspace(-1, 1, k)) @ v[:, :k].T
        singular = torch.linalg.svdvals(orthogonalize(matrix, steps=5))
        assert singular.min() > 0.3 and singular.max() < 1.5  # Newton–Schulz: S' roughly in (0.5, 1.5)
        assert orthogonalize(matrix).shape == shape


def test_muon_rejects_non_matrices():
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(3))])


def test_parameter_split_keeps_embeddings_and_vectors_out_of_muon():
    model = tiny_gpt()
    hidden, others, vectors = split_parameters(model)
    assert all(p.ndim == 2 for p in hidden) and all(p.ndim < 2 for p in vectors)
    assert any(p is model.transformer.wte.weight for p in others)
    total = sum(p.numel() for p in model.parameters())  # counts the tied weight once
    assert sum(p.numel() for p in hidden + others + vectors) == total


@pytest.mark.parametrize("name", ["adamw", "muon"])
def test_optimizers_reduce_loss(name: str):
    model = tiny_gpt(seed=3).train()
    optimizers = build_optimizers(model, name, 3e-3, 0.0, (0.9, 0.95), 0.02, 0.95, torch.device("cpu"))
    x = torch.randint(0, 32, (8, 16), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(30):
        _, loss = model(x[:, :-1], x[:, 1:])
        losses.append(loss.item())
        loss.backward()
        for optimizer in optimizers.values():
            optimizer.step()
            optimizer.zero_grad()
    assert losses[-1] < losses[0] - 0.5 and not math.isnan(losses[-1])
