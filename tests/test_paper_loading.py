"""Paper-scale loading code, exercised on tiny random checkpoints written in the real formats."""

import pytest
import torch
from safetensors.torch import save_file
from transformers import SiglipVisionConfig, SiglipVisionModel, Siglip2VisionConfig, Siglip2VisionModel

from xomni.tokenizer.siglip_vq import (SiglipVQ, SiglipVQConfig, load_official_projector, load_siglip_encoder,
                                       patchify)

CFG = SiglipVQConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, position_grid=4,
                     codebook_size=16, codebook_dim=8, adapter_dim=32, adapter_blocks=2)


def _hf_kwargs():
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=16)


def test_siglip_conv_tower_matches_transformers_before_the_final_norm(tmp_path):
    torch.manual_seed(0)
    hf = SiglipVisionModel(SiglipVisionConfig(image_size=64, **_hf_kwargs())).eval()
    hf.save_pretrained(tmp_path)
    vq = SiglipVQ(CFG).eval()
    load_siglip_encoder(vq, tmp_path)
    pixels = torch.rand(2, 3, 64, 64)
    ref = hf(pixel_values=pixels * 2 - 1, output_hidden_states=True).hidden_states[-1]
    x = vq.embeddings(patchify(pixels * 2 - 1, 16), torch.tensor([[4, 4], [4, 4]]))
    ours = vq.encoder(inputs_embeds=x).last_hidden_state
    assert torch.allclose(ours, ref, atol=1e-5)


def test_siglip2_linear_tower_matches_transformers(tmp_path):
    torch.manual_seed(0)
    hf = Siglip2VisionModel(Siglip2VisionConfig(num_patches=16, **_hf_kwargs())).eval()
    hf.save_pretrained(tmp_path)
    vq = SiglipVQ(CFG).eval()
    load_siglip_encoder(vq, tmp_path)
    pixels = torch.rand(1, 3, 48, 80) * 2 - 1
    channel_last = pixels.reshape(1, 3, 3, 16, 5, 16).permute(0, 2, 4, 3, 5, 1).reshape(1, 15, 768)  # SigLIP2's order
    ref = hf(pixel_values=channel_last, pixel_attention_mask=torch.ones(1, 15, dtype=torch.long),
             spatial_shapes=torch.tensor([[3, 5]]), output_hidden_states=True).hidden_states[-1]
    x = vq.embeddings(patchify(pixels, 16), torch.tensor([[3, 5]]))
    assert torch.allclose(vq.encoder(inputs_embeds=x).last_hidden_state, ref, atol=1e-5)


def test_official_projector_names_map_onto_ours(tmp_path):
    torch.manual_seed(0)
    state = {"quant_conv.weight": torch.randn(8, 32, 1, 1), "quant_conv.bias": torch.randn(8),
             "quantize.embedding.weight": torch.randn(16, 8),
             "post_quant_conv.weight": torch.randn(32, 8, 1, 1), "post_quant_conv.bias": torch.randn(32)}
    for i in range(2):
        for part in ("norm1", "norm2"):
            state[f"post_conv.{i}.{part}.weight"], state[f"post_conv.{i}.{part}.bias"] = torch.randn(32), torch.randn(32)
        for part in ("conv1", "conv2"):
            state[f"post_conv.{i}.{part}.weight"], state[f"post_conv.{i}.{part}.bias"] = torch.randn(32, 32, 3, 3), torch.randn(32)
    save_file(state, str(tmp_path / "projector.safetensors"))
    vq = SiglipVQ(CFG)
    load_official_projector(vq, tmp_path / "projector.safetensors")
    assert torch.equal(vq.codebook, state["quantize.embedding.weight"])
    assert torch.equal(vq.proj.weight, state["quant_conv.weight"][:, :, 0, 0])
    assert torch.equal(vq.post_blocks[1].conv2.weight, state["post_conv.1.conv2.weight"])
    torch.save(state, tmp_path / "projector.pt")  # X-Omni's code reads its projector with torch.load
    from_pt = SiglipVQ(CFG)
    load_official_projector(from_pt, tmp_path / "projector.pt")
    assert torch.equal(from_pt.codebook, state["quantize.embedding.weight"])
    del state["post_conv.1.conv2.bias"]
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ValueError, match="missing"):
        load_official_projector(SiglipVQ(CFG), tmp_path / "broken.safetensors")


def test_wrong_tower_is_refused(tmp_path):
    save_file({"something.weight": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="no SigLIP vision tower"):
        load_siglip_encoder(SiglipVQ(CFG), tmp_path)


def test_flux_transformer_and_vae_load_from_a_local_folder(tmp_path):
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    from xomni.decoder.codec import LatentCodec
    from xomni.decoder.flux import DecoderConfig, SemanticFlux
    from xomni.decoder.sampling import sample

    cfg = DecoderConfig(in_channels=4, patch_px=16, patch_size=2, num_layers=1, num_single_layers=1,
                        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=8,
                        axes_dims_rope=(4, 6, 6), semantic_dim=8, guidance_embeds=True, vae_path=str(tmp_path))
    torch.manual_seed(0)
    FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                           num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=8,
                           guidance_embeds=True, axes_dims_rope=(4, 6, 6)).save_pretrained(tmp_path / "transformer")
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  norm_num_groups=4, shift_factor=0.1, scaling_factor=0.5).save_pretrained(tmp_path / "vae")
    net = SemanticFlux.from_flux(cfg, str(tmp_path))
    assert torch.equal(net.semantic_in.weight, torch.zeros_like(net.semantic_in.weight))
    codec = LatentCodec(cfg)
    pixels = torch.rand(1, 3, 32, 48)
    patches = codec.to_patches(pixels)
    assert patches.shape == (1, 6, 16)  # 2x3 tokens of 16 px, 4 latent channels packed 2x2
    with torch.no_grad():  # FLUX's shift and scale, both ways
        latents = codec.vae.encode(pixels * 2 - 1).latent_dist.mode()
        torch.testing.assert_close(patches, patchify((latents - 0.1) * 0.5, 2))
        back = ((codec.vae.decode(latents).sample + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(codec.to_pixels(patches, 2, 3), back)
    out = codec.to_pixels(sample(net, torch.randn(1, 2, 3, 8), steps=2), 2, 3)
    assert out.shape == (1, 3, 32, 48)
    half = SemanticFlux.from_flux(cfg, str(tmp_path), torch_dtype=torch.bfloat16)  # the size FLUX.1-dev is held in
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert torch.isfinite(sample(half, torch.randn(1, 2, 3, 8), steps=2)).all()  # float32 noise and embeddings
    bad = DecoderConfig(**{**cfg.__dict__, "num_single_layers": 2})
    with pytest.raises(ValueError, match="asks for"):
        SemanticFlux.from_flux(bad, str(tmp_path))


def test_tokenizer_stage_starts_from_a_local_siglip_tower(tmp_path, monkeypatch):
    from xomni.stages import train_tokenizer

    torch.manual_seed(0)
    hf = SiglipVisionModel(SiglipVisionConfig(image_size=64, **_hf_kwargs()))
    hf.save_pretrained(tmp_path / "siglip")
    monkeypatch.setitem(train_tokenizer.PRESETS, "test", CFG)
    train_tokenizer.main(train_tokenizer.Config(preset="test", out=str(tmp_path / "run"), steps=1, batch_size=2,
                                                eval_n=2, bpe_vocab=300, bpe_scenes=20, sizes="64x64",
                                                siglip_path=str(tmp_path / "siglip"), lr=0.0))  # the tower unmoved
    from xomni.stages.train_tokenizer import load_tokenizer

    vq = load_tokenizer(tmp_path / "run" / "tokenizer")
    ref = {k.split("vision_model.")[-1]: v for k, v in hf.state_dict().items()}
    assert torch.equal(vq.encoder.layers[1].mlp.fc2.weight, ref["encoder.layers.1.mlp.fc2.weight"])
    assert torch.equal(vq.embeddings.patch_embedding.weight, ref["embeddings.patch_embedding.weight"].reshape(32, -1))
