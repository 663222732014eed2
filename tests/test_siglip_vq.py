import pytest
import torch
import torch.nn.functional as F

from xomni.tokenizer.siglip_vq import SiglipVQ, SiglipVQConfig, nearest_codes, patchify, unpatchify, utilization

SMALL = SiglipVQConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, position_grid=4,
                       codebook_size=64, codebook_dim=8, adapter_dim=32, adapter_blocks=1)


def test_nearest_codes_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 5, 7, 16, generator=g)
    cb = torch.randn(100, 16, generator=g)
    got = nearest_codes(z, cb)
    zn, cbn = F.normalize(z, dim=-1), F.normalize(cb, dim=-1)
    for idx in torch.cartesian_prod(torch.arange(3), torch.arange(5), torch.arange(7)):
        b, i, j = idx.tolist()
        dist = [((zn[b, i, j] - cbn[k]) ** 2).sum().item() for k in range(100)]
        assert got[b, i, j].item() == min(range(100), key=dist.__getitem__)


def test_patchify_inverts():
    x = torch.randn(2, 3, 32, 48)
    p = patchify(x, 16)
    assert p.shape == (2, 6, 768)
    assert torch.equal(p[0, 1], x[0, :, 0:16, 16:32].reshape(-1))
    assert torch.equal(unpatchify(p, 2, 3, 16, 3), x)


@pytest.mark.parametrize("hw", [(64, 64), (48, 80)])
def test_token_grid_shapes_at_any_size(hw):
    torch.manual_seed(0)
    vq = SiglipVQ(SMALL)
    pixels = torch.rand(2, 3, *hw)
    q = vq(pixels)
    h, w = hw[0] // 16, hw[1] // 16
    assert q.codes.shape == (2, h, w) and q.embeddings.shape == (2, h, w, 32)
    assert torch.equal(vq.encode(pixels), q.codes)
    assert torch.allclose(vq.embed_codes(q.codes), q.embeddings, atol=1e-5)


def test_straight_through_reaches_the_encoder():
    torch.manual_seed(0)
    vq = SiglipVQ(SMALL)
    q = vq(torch.rand(2, 3, 32, 32))
    q.embeddings.sum().backward()  # through the quantiser alone: the commitment loss, which reaches it too, left out
    assert vq.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    vq.zero_grad()
    vq(torch.rand(2, 3, 32, 32)).vq_loss.backward()  # the codebook learns from its own loss
    assert vq.codebook.grad.abs().sum() > 0


def test_restart_codes_reseeds_only_dead_rows():
    torch.manual_seed(0)
    vq = SiglipVQ(SMALL)
    before = vq.codebook.detach().clone()
    dead = torch.zeros(64, dtype=torch.bool)
    dead[[3, 10]] = True
    samples = F.normalize(torch.randn(5, 8), dim=-1)
    assert vq.restart_codes(dead, samples, torch.Generator().manual_seed(0)) == 2
    assert torch.equal(vq.codebook[~dead], before[~dead])
    assert not torch.allclose(vq.codebook[dead], before[dead])
    assert torch.allclose(vq.codebook[dead].norm(dim=-1), torch.ones(2))


def test_embed_codes_refuses_out_of_range():
    vq = SiglipVQ(SMALL)
    with pytest.raises(ValueError):
        vq.embed_codes(torch.tensor([[[64]]]))


def test_utilization_counts_distinct_codes():
    assert utilization(torch.tensor([0, 0, 1, 5]), 8) == 3 / 8

