"""The only place that wires the components together.

`ImagePipeline`: image -> SigLIP-VQ codes -> semantic embeddings -> diffusion decoder -> image (the "render engine"
with its tokenizer). `Pipeline` adds the unified AR model and its engine: text -> image, image -> text, and
multi-turn conversations in which a generated image's tokens stay in the context.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from xomni.checkpoint import REPO_ROOT, load_component
from xomni.data.batches import pixels_of
from xomni.decoder.codec import make_codec
from xomni.decoder.flux import DecoderConfig, SemanticFlux
from xomni.decoder.sampling import sample
from xomni.tokenizer.preprocess import RULES, prepare_image
from xomni.tokenizer.siglip_vq import PRESETS as TOKENIZER_PRESETS
from xomni.tokenizer.siglip_vq import SiglipVQ, SiglipVQConfig

DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "tiny"


def checkpoint_preset(path: str | Path) -> str:
    """The preset a checkpoint folder's images are prepared by (its resize rule, its generation sizes): the one its
    tokenizer was trained with (tokenizer/meta.json), else the preset whose tokenizer sizes its config.json has,
    else tiny. Read before any weights load."""
    folder = Path(path) / "tokenizer"

    def read(name: str) -> dict:
        try:
            return json.loads((folder / name).read_text())
        except (OSError, ValueError):
            return {}

    preset = (read("meta.json").get("config") or {}).get("preset")
    if preset in RULES:
        return preset
    sizes = read("config.json")
    found = [name for name, c in TOKENIZER_PRESETS.items()
             if all(sizes.get(k) == getattr(c, k) for k in ("hidden_size", "num_layers", "codebook_size"))]
    return found[0] if len(found) == 1 and found[0] in RULES else "tiny"


@dataclass
class ImagePipeline:
    tokenizer: SiglipVQ
    decoder: SemanticFlux
    preset: str = "tiny"

    def __post_init__(self):
        self.codec = make_codec(self.decoder.config)  # pixels (tiny) or FLUX VAE latents (paper)

    @classmethod
    def from_pretrained(cls, path: str | Path = DEFAULT_CHECKPOINT, preset: str | None = None) -> "ImagePipeline":
        """preset: the image rules (default: the checkpoint's own, `checkpoint_preset`)."""
        path = Path(path)
        preset = preset or checkpoint_preset(path)
        if not (path / "tokenizer" / "config.json").is_file():
            raise FileNotFoundError(f"no checkpoint at {path}; train one with `bash runs/cpu_tiny.sh` "
                                    "(it writes checkpoints/tiny) or pass --checkpoint DIR")
        tokenizer = load_component(path / "tokenizer", SiglipVQConfig, SiglipVQ).eval().requires_grad_(False)
        decoder = load_component(path / "decoder", DecoderConfig, SemanticFlux).eval().requires_grad_(False)
        if decoder.config.semantic_dim != tokenizer.config.adapter_dim:
            raise ValueError(f"decoder expects {decoder.config.semantic_dim}-d semantic embeddings, "
                             f"tokenizer gives {tokenizer.config.adapter_dim}")
        return cls(tokenizer, decoder, preset)

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    def to(self, device) -> "ImagePipeline":
        """Tokenizer, decoder and codec moved to `device`; inputs are moved to them, `decode` returns pixels on it
        (`to_image` brings them to the CPU)."""
        self.tokenizer.to(device), self.decoder.to(device), self.codec.to(device)
        return self

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, h, w) codes, on the pipeline's device."""
        return self.tokenizer.encode(pixels.to(next(self.tokenizer.parameters()).device))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, steps: int = 20,
               generator: torch.Generator | list[torch.Generator] | None = None, guidance: float = 1.0) -> torch.Tensor:
        """(B, h, w) codes -> (B, 3, h*16, w*16) pixels in [0, 1]; generator: one, or one per row."""
        _, h, w = codes.shape
        semantic = self.tokenizer.embed_codes(codes.to(next(self.tokenizer.parameters()).device))  # B h w Ds
        semantic = semantic.to(self.device)
        patches = sample(self.decoder, semantic, steps=steps, generator=generator, guidance=guidance)  # B N P
        r = self.decoder.config.ratio
        return self.codec.to_pixels(patches, h * r, w * r)  # B 3 H W

    def reconstruct_images(self, images: list[Image.Image], steps: int = 20, seed: int = 0) -> list[Image.Image]:
        """Images of one size -> reconstructions through the tokens. Each image is validated and prepared first."""
        prepared = [prepare_image(im, self.preset) for im in images]
        if len({im.size for im in prepared}) != 1:
            raise ValueError("reconstruct_images takes images that prepare to one size; call it per size")
        codes = self.encode(pixels_of(prepared))
        out = self.decode(codes, steps=steps, generator=torch.Generator().manual_seed(seed))
        return [to_image(x) for x in out]


def to_image(pixels: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] (any device or float dtype) -> PIL RGB."""
    array = pixels.detach().float().cpu().permute(1, 2, 0).numpy()
    return Image.fromarray((array * 255).round().astype(np.uint8), "RGB")


def parse_size(text: str) -> tuple[int, int]:
    """"WIDTHxHEIGHT" (pixels) -> (width, height), or a clear error."""
    try:
        width, height = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"a size is WIDTHxHEIGHT in pixels, got {text!r}") from None
    return width, height


def check_generation_size(width: int, height: int, preset: str = "tiny") -> tuple[int, int]:
    """(rows, cols) of the token grid for a generated image, or a clear error for sizes that are not one."""
    rule = RULES[preset]
    if width % 16 or height % 16:
        raise ValueError(f"size {width}x{height} is not a whole grid of 16 px tokens")
    short, long = min(width, height), max(width, height)
    if short < rule.min_side or long > rule.long_side:
        raise ValueError(f"size {width}x{height} is outside {rule.min_side}..{rule.long_side} px per side ({preset})")
    if long / short > rule.max_aspect:
        raise ValueError(f"size {width}x{height} has aspect {long / short:.2f}, beyond the limit of {rule.max_aspect}")
    return height // 16, width // 16


@dataclass
class Conversation:
    """A multi-turn context of token ids: generated images stay in it as tokens, never re-encoded."""

    ids: list[int]
    has_image: bool = False
    open_turn: bool = False  # a user turn holding an image waits for its question


class Pipeline:
    """Text -> image (AR model -> codes -> decoder) and image -> text (tokenizer -> AR model), one checkpoint folder:
    text_tokenizer.json, tokenizer/, decoder/, ar/."""

    PARTS = ("text_tokenizer.json", "tokenizer", "decoder", "ar")

    def __init__(self, image: ImagePipeline, model, tok, preset: str = "tiny"):
        from xomni.data.sequences import Formatter
        from xomni.engine import Engine

        if model.config.padded_text_rows:  # Qwen2.5's embedding has more rows than tokens: image ids start after it
            tok = tok.padded_to(model.config.text_vocab_size)
        self.image, self.model, self.tok, self.preset = image, model, tok, preset
        self.engine = Engine(model, tok)
        self.fmt = Formatter(tok, model.config.codebook_size)
        if model.config.codebook_size != image.tokenizer.config.codebook_size:
            raise ValueError("the AR model's image vocabulary does not match the tokenizer's codebook")

    def to(self, device) -> "Pipeline":
        """Every part moved to `device` (the engine follows the model's; images come back on the CPU)."""
        self.model.to(device), self.image.to(device)
        return self

    @classmethod
    def from_pretrained(cls, path: str | Path = DEFAULT_CHECKPOINT, preset: str | None = None) -> "Pipeline":
        """preset: the image rules (default: the checkpoint's own, `checkpoint_preset`)."""
        from xomni.model.unified import UnifiedConfig, UnifiedModel
        from xomni.tokenizer.text import TextTokenizer

        path = Path(path)
        missing = [p for p in cls.PARTS if not (path / p).exists()]
        if missing:
            raise FileNotFoundError(f"checkpoint {path} lacks {', '.join(missing)}; train one with "
                                    "`bash runs/cpu_tiny.sh` or pass --checkpoint DIR")
        model = load_component(path / "ar", UnifiedConfig, UnifiedModel).eval().requires_grad_(False)
        image = ImagePipeline.from_pretrained(path, preset)
        return cls(image, model, TextTokenizer.from_file(path / "text_tokenizer.json"), image.preset)

    def generate(self, prompts: list[str], width: int = 128, height: int = 128, sampling=None, seed: int = 0,
                 decoder_steps: int = 20) -> tuple[list[Image.Image], torch.Tensor]:
        """Prompts -> images and their codes (B, rows, cols). X-Omni's default sampling (min-p 0.03, no CFG)."""
        gen = torch.Generator().manual_seed(seed)
        _, codes = self.sample_codes(prompts, width, height, sampling, gen)
        return self.render(codes, decoder_steps, gen), codes

    def sample_codes(self, prompts: list[str], width: int = 128, height: int = 128, sampling=None,
                     generator: torch.Generator | None = None):
        """Prompts -> the engine's rollout (tokens, log-probs, top-code probabilities) and the codes (B, rows, cols):
        `generate` without the decoder."""
        from xomni.engine import Sampling

        rows, cols = check_generation_size(width, height, self.preset)
        ids = [self.fmt.generation_prompt(p) for p in prompts]
        out = self.engine.generate_image(ids, rows, cols, sampling or Sampling(), generator)
        return out, self.fmt.vocab.image_code(out.tokens).reshape(len(prompts), rows, cols)

    def render(self, codes: torch.Tensor, decoder_steps: int = 20,
               generator: torch.Generator | None = None) -> list[Image.Image]:
        """Codes (B, rows, cols) -> images, through the diffusion decoder."""
        return [to_image(x) for x in self.image.decode(codes, steps=decoder_steps, generator=generator)]

    def codes_of(self, image: Image.Image) -> torch.Tensor:
        """Any image -> its (rows, cols) codes, prepared by the preset's rule."""
        return self.image.encode(pixels_of([prepare_image(image, self.preset)]))[0]

    def understand(self, image: Image.Image | None, question: str, max_new_tokens: int = 64, sampling=None) -> str:
        """Image + question -> answer (greedy by default)."""
        if image is None:
            raise ValueError("a question needs an image")
        conv = self.start(image)
        return self.ask(conv, question, max_new_tokens, sampling)

    def start(self, image: Image.Image | None = None) -> Conversation:
        if image is None:
            return Conversation([])
        codes = self.codes_of(image)
        rows, cols = codes.shape
        return Conversation(self.fmt.image_turn(codes.flatten().tolist(), rows, cols), has_image=True, open_turn=True)

    def ask(self, conv: Conversation, question: str, max_new_tokens: int = 64, sampling=None) -> str:
        """Append a question to the conversation, generate the answer, keep both in the context."""
        from xomni.engine import Sampling

        if not conv.has_image:
            raise ValueError("a question needs an image in the conversation")
        prompt = conv.ids + self.fmt.question_turn(question, conv.open_turn)
        out = self.engine.generate_text([prompt], max_new_tokens, sampling or Sampling(temperature=0, min_p=0))
        answer = out.tokens[0].tolist()
        eos = self.fmt.vocab.eos_id
        answer = answer[: answer.index(eos)] if eos in answer else answer
        conv.ids = prompt + answer + [eos] + self.tok.encode("\n")
        conv.open_turn = False
        return self.tok.decode(answer).strip()

    def draw(self, conv: Conversation, prompt: str, width: int = 128, height: int = 128, sampling=None,
             seed: int = 0, decoder_steps: int = 20) -> Image.Image:
        """Generate an image inside the conversation; its tokens stay in the context for follow-up questions."""
        from xomni.engine import Sampling

        rows, cols = check_generation_size(width, height, self.preset)
        if conv.open_turn:
            raise ValueError("the conversation waits for a question about its image")
        context = conv.ids + self.fmt.generation_prompt(prompt)
        gen = torch.Generator().manual_seed(seed)
        out = self.engine.generate_image([context], rows, cols, sampling or Sampling(), gen)
        codes = self.fmt.vocab.image_code(out.tokens).reshape(1, rows, cols)
        conv.ids = context + self.tok.image_prefix(rows, cols) + out.tokens[0].tolist() + \
            [self.fmt.vocab.eom_id, self.fmt.vocab.eos_id] + self.tok.encode("\n")
        conv.has_image = True
        return to_image(self.image.decode(codes, steps=decoder_steps, generator=gen)[0])
