import pytest
import torch

from xomni.decoder.flux import DecoderConfig, SemanticFlux, image_ids
from xomni.decoder.sampling import flow_matching_loss, sample

SMALL = DecoderConfig(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                      joint_attention_dim=16, pooled_projection_dim=16, axes_dims_rope=(4, 6, 6), semantic_dim=8)


def test_zero_initialised_semantic_map_starts_as_a_no_op():
    torch.manual_seed(0)
    net = SemanticFlux(SMALL)
    x, t = torch.randn(2, 6, SMALL.patch_dim), torch.rand(2)
    a = net(x, t, torch.randn(2, 2, 3, 8))
    b = net(x, t, torch.randn(2, 2, 3, 8))
    assert torch.equal(a, b)
    loss = a.pow(2).mean()
    loss.backward()
    assert net.semantic_in.weight.grad.abs().sum() > 0  # ... and still learns


def test_semantic_map_covers_every_patch_under_its_token():
    cfg = DecoderConfig(**{**SMALL.__dict__, "patch_px": 8, "patch_size": 8})
    net = SemanticFlux(cfg)
    torch.nn.init.normal_(net.semantic_in.weight)
    sem = torch.zeros(1, 2, 3, 8)
    sem[0, 1, 2] = 1.0  # only the bottom-right token is non-zero
    inj = net.inject(sem).reshape(1, 4, 6, -1)  # 2x3 tokens -> 4x6 patches
    nonzero = inj.abs().sum(-1)[0] > 0
    expected = torch.zeros(4, 6, dtype=torch.bool)
    expected[2:4, 4:6] = True
    assert torch.equal(nonzero, expected)


def test_image_ids_are_row_major():
    ids = image_ids(2, 3)
    assert ids.tolist()[:4] == [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0]]


def test_sampler_and_loss_shapes():
    torch.manual_seed(0)
    net = SemanticFlux(SMALL)
    sem = torch.randn(2, 2, 2, 8)
    out = sample(net, sem, steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 4, SMALL.patch_dim) and torch.isfinite(out).all()
    again = sample(net, sem, steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    loss = flow_matching_loss(net, torch.rand(2, 4, SMALL.patch_dim) * 2 - 1, sem, torch.Generator().manual_seed(1))
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_one_generator_per_row_makes_a_row_independent_of_its_batch():
    torch.manual_seed(0)
    net = SemanticFlux(SMALL)
    sem = torch.randn(3, 2, 2, 8)
    gens = lambda *seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    both = sample(net, sem[:2], steps=2, generator=gens(5, 7))
    alone = sample(net, sem[1:2], steps=2, generator=gens(7))
    assert torch.allclose(both[1:], alone, atol=1e-6)
    other = sample(net, sem[[2, 1]], steps=2, generator=gens(5, 7))  # another row beside it: the same row 1
    assert torch.allclose(other[1:], alone, atol=1e-6)
    assert not torch.allclose(both[:1], sample(net, sem[:1], steps=2, generator=gens(7)))
    with pytest.raises(ValueError, match="2 generators for a batch of 3"):
        sample(net, sem, steps=2, generator=gens(5, 7))


def test_a_perfect_clean_image_predictor_has_no_loss_and_samples_its_image():
    """The flow's conventions end to end: with the network predicting the clean patches exactly, the velocity target
    noise - x0 is met (loss 0) and the sampler integrates from noise to x0 (to within the clamp at small t)."""
    torch.manual_seed(0)
    cfg = DecoderConfig(**{**SMALL.__dict__, "prediction": "sample"})
    net = SemanticFlux(cfg)
    x0 = torch.rand(2, 4, SMALL.patch_dim) * 2 - 1
    net.forward = lambda *args, **kwargs: x0
    sem = torch.randn(2, 2, 2, 8)
    assert flow_matching_loss(net, x0, sem, torch.Generator().manual_seed(1)) < 1e-10
    torch.testing.assert_close(sample(net, sem, steps=3, generator=torch.Generator().manual_seed(2)), x0,
                               atol=1e-2, rtol=0)


def test_mismatched_grid_is_refused():
    net = SemanticFlux(SMALL)
    with pytest.raises(ValueError, match="patches"):
        net(torch.randn(1, 5, SMALL.patch_dim), torch.rand(1), torch.randn(1, 2, 2, 8))


def test_config_checks_rope_axes():
    with pytest.raises(ValueError, match="axes_dims_rope"):
        DecoderConfig(axes_dims_rope=(4, 4, 4))


def test_sample_prediction_is_turned_into_the_exact_velocity():
    from xomni.decoder.sampling import predict_velocity

    torch.manual_seed(0)
    net = SemanticFlux(SMALL)
    x0, noise, t = torch.rand(2, 4, SMALL.patch_dim), torch.randn(2, 4, SMALL.patch_dim), torch.tensor([0.3, 0.8])
    xt = (1 - t)[:, None, None] * x0 + t[:, None, None] * noise
    net.forward = lambda x, t, semantic, prior=None: x0  # a perfect x_0 predictor
    assert torch.allclose(predict_velocity(net, xt, t, torch.zeros(2, 2, 2, 8)), noise - x0, atol=1e-5)


def test_unknown_prediction_type_is_refused():
    with pytest.raises(ValueError, match="prediction"):
        DecoderConfig(prediction="epsilon")


def test_patch_prior_starts_at_zero_and_draws_each_token_into_its_own_patches():
    torch.manual_seed(0)
    cfg = DecoderConfig(**{**SMALL.__dict__, "patch_px": 8, "patch_size": 8, "patch_prior": 32})
    net = SemanticFlux(cfg)
    x, t, sem = torch.randn(1, 24, cfg.patch_dim), torch.rand(1), torch.randn(1, 2, 3, 8)
    alone = net(x, t, sem)
    torch.nn.init.normal_(net.prior[-1].weight)
    changed = (net(x, t, sem) - alone).reshape(1, 4, 6, -1)
    assert torch.equal(net(x, t, sem, net.prior_patches(sem)), net(x, t, sem))  # the stage passes them in
    prior = net.prior(sem)  # 1 2 3 (r r P)
    assert torch.allclose(changed[0, 2:4, 4:6].reshape(4, -1), prior[0, 1, 2].reshape(2, 2, -1).reshape(4, -1),
                          atol=1e-5)  # the bottom-right token's vector, split into its 2x2 patches row-major
    assert torch.allclose(changed[0, 0, 0], prior[0, 0, 0, : cfg.patch_dim], atol=1e-5)


def test_patch_prior_needs_sample_prediction():
    with pytest.raises(ValueError, match="patch_prior"):
        DecoderConfig(patch_prior=16, prediction="velocity")


def test_a_detached_prior_gets_no_gradient_from_the_networks_output_and_the_rest_still_does():
    torch.manual_seed(0)
    net = SemanticFlux(DecoderConfig(**{**SMALL.__dict__, "patch_prior": 16}))
    torch.nn.init.normal_(net.prior[-1].weight)
    torch.nn.init.normal_(net.semantic_in.weight)
    x, t, sem = torch.randn(1, 6, SMALL.patch_dim), torch.rand(1), torch.randn(1, 2, 3, 8)
    net.detach_prior = True
    net(x, t, sem).pow(2).mean().backward()
    assert all(p.grad is None for p in net.prior.parameters())
    assert net.semantic_in.weight.grad.abs().sum() > 0
    net.zero_grad()
    net.detach_prior = False
    net(x, t, sem).pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.prior.parameters())
