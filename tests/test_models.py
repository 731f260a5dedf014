"""Models: picked by name from the registry; output shapes; GPT is causal."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import models


def n_params(model: nn.Module) -> int:
    # Tied weights count once (parameters() deduplicates shared tensors).
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- registry
def test_registry_knows_the_bundled_models():
    assert {"mlp", "cnn", "gpt"} <= set(models.names())


def test_unknown_model_name_fails_listing_the_known_ones():
    with pytest.raises(KeyError, match="resnet") as err:
        models.build("resnet", (1, 8, 8), 10)
    assert "mlp" in str(err.value) and "cnn" in str(err.value)


def test_registered_model_is_built_by_name_with_its_hyperparameters():
    @models.register("test_linear")
    class Linear(nn.Module):
        def __init__(self, input_shape, num_outputs, bias=True):
            super().__init__()
            self.input_shape = input_shape
            self.fc = nn.Linear(input_shape[0], num_outputs, bias=bias)

    try:
        model = models.build("test_linear", [5], 3, bias=False)
        assert isinstance(model, Linear)
        assert model.input_shape == (5,)  # a list shape arrives as a tuple
        assert model.fc.bias is None
        assert "test_linear" in models.names()
    finally:
        models._REGISTRY.pop("test_linear", None)


# ----------------------------------------------------------------------------- mlp
def test_mlp_784_128_64_10_has_the_classic_parameter_count():
    model = models.build("mlp", (1, 28, 28), 10, hidden_sizes=(128, 64))
    assert n_params(model) == 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10 == 109386
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "sigmoid"])
def test_mlp_options_keep_the_output_shape(activation):
    model = models.build("mlp", (16,), 3, hidden_sizes=(8, 8, 4), activation=activation, dropout=0.5,
                         batch_norm=True)
    assert model(torch.randn(6, 16)).shape == (6, 3)
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 4
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == 3


# ----------------------------------------------------------------------------- cnn
@pytest.mark.parametrize("input_shape", [(1, 8, 8), (3, 32, 32), (8, 8)])
def test_cnn_outputs_one_row_of_logits_per_image(input_shape):
    model = models.build("cnn", input_shape, 10).eval()
    out = model(torch.randn(4, *input_shape))
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()


def test_cnn_accepts_flattened_images():
    model = models.build("cnn", (1, 8, 8), 10).eval()
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(model(x.reshape(3, 64)), model(x))


def test_cnn_rejects_a_flat_input_shape():
    with pytest.raises(ValueError, match="cnn needs"):
        models.build("cnn", (64,), 10)


def test_cnn_stages_follow_channels():
    model = models.build("cnn", (3, 32, 32), 7, channels=(4, 8, 16), batch_norm=False)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].in_channels == 3
    assert sorted({c.out_channels for c in convs}) == [4, 8, 16]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.head[-1].in_features == 16 and model.head[-1].out_features == 7


# ----------------------------------------------------------------------------- gpt
def small_gpt(block_size=16, vocab=11):
    torch.manual_seed(0)
    return models.build("gpt", (block_size,), vocab, n_layer=2, n_head=2, n_embd=16, dropout=0.1)


def test_gpt_outputs_batch_time_vocab():
    model = small_gpt(block_size=16, vocab=11).eval()
    assert model(torch.randint(0, 11, (3, 16))).shape == (3, 16, 11)
    assert model(torch.randint(0, 11, (2, 5))).shape == (2, 5, 11)  # shorter than the block is fine


def test_gpt_ties_the_output_head_to_the_token_embedding():
    model = small_gpt()
    assert model.head.weight is model.tok_emb.weight


def test_gpt_is_causal_changing_a_later_token_leaves_earlier_logits_alone():
    model = small_gpt(block_size=16, vocab=11).eval()
    idx = torch.randint(0, 11, (2, 16), generator=torch.Generator().manual_seed(1))
    changed = idx.clone()
    j = 9
    changed[:, j] = (idx[:, j] + 1) % 11
    with torch.no_grad():
        before, after = model(idx), model(changed)
    torch.testing.assert_close(after[:, :j], before[:, :j], rtol=0, atol=1e-6)
    # ...while the changed position and the ones after it do see the change.
    assert not torch.allclose(after[:, j:], before[:, j:], atol=1e-4)


def test_gpt_eval_mode_is_deterministic_and_train_mode_uses_dropout():
    model = small_gpt()
    idx = torch.randint(0, 11, (2, 16), generator=torch.Generator().manual_seed(2))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(idx), model(idx), rtol=0, atol=0)
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(idx), model(idx))
