"""Adapters for the official judges, loaded from a local folder (nothing is fetched from a hub).

- Qwen2.5-VL-7B-Instruct: LongText-Bench's and OneIG-Bench's OCR judge (with their exact prompt, greedy decoding),
  X-Omni's alignment reward, and here a yes/no VQA judge for DPG-style questions.
- GOT-OCR2.0 (the transformers port, `GotOcr2ForConditionalGeneration`): X-Omni's second OCR reward engine.

Both need the weights on disk and `pip install -e .[judges]` (accelerate, for device placement). A missing folder
or package is a `MissingPart` with what to do, not a crash.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from xomni.errors import MissingPart

# LongText-Bench and OneIG-Bench ask Qwen2.5-VL exactly this.
OCR_PROMPT = ("Recognize the text in the image, only reply with the text content, but avoid repeating previously "
              "mentioned content. If no text is recognized, please reply with 'No text recognized'.")
VQA_SUFFIX = " Answer yes or no."


def _check_folder(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise MissingPart(f"{what} weights not found at {path} (a folder with config.json and the safetensors); "
                          "download them on a machine with access and pass the folder")
    return path


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class Qwen25VLJudge:
    def __init__(self, path: str | Path, max_new_tokens: int = 1024):
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        path = _check_folder(path, "Qwen2.5-VL")
        self.name = f"qwen2.5-vl:{path.name}"
        dtype = torch.bfloat16 if _device() == "cuda" else torch.float32
        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=dtype).to(_device()).eval()
        self.processor = AutoProcessor.from_pretrained(path)
        self.max_new_tokens = max_new_tokens

    @torch.no_grad()
    def _ask(self, image: Image.Image, text: str, max_new_tokens: int) -> str:
        messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]
        inputs = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True, return_tensors="pt").to(self.model.device)
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)[0]

    def read(self, image: Image.Image) -> str:
        return self._ask(image.convert("RGB"), OCR_PROMPT, self.max_new_tokens)

    def read_batch(self, images: list[Image.Image]) -> list[str]:
        return [self.read(im) for im in images]

    def answer(self, image: Image.Image, question: str) -> str:
        """The reply lower-cased without its final period: "yes" or "no" as DPG-Bench's judge answers, or
        whatever else the model said (which scores as no)."""
        return self._ask(image.convert("RGB"), question + VQA_SUFFIX, 8).strip().lower().rstrip(".")


class GotOcr2Judge:
    def __init__(self, path: str | Path, max_new_tokens: int = 1024):
        from transformers import AutoProcessor, GotOcr2ForConditionalGeneration

        path = _check_folder(path, "GOT-OCR2.0")
        self.name = f"got-ocr2:{path.name}"
        self.model = GotOcr2ForConditionalGeneration.from_pretrained(path).to(_device()).eval()
        self.processor = AutoProcessor.from_pretrained(path)
        self.max_new_tokens = max_new_tokens

    @torch.no_grad()
    def read(self, image: Image.Image) -> str:
        inputs = self.processor(image.convert("RGB"), return_tensors="pt").to(self.model.device)
        out = self.model.generate(**inputs, do_sample=False, tokenizer=self.processor.tokenizer,
                                  stop_strings="<|im_end|>", max_new_tokens=self.max_new_tokens)
        return self.processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    def read_batch(self, images: list[Image.Image]) -> list[str]:
        return [self.read(im) for im in images]


def load_official_judge(name: str, path: str | Path):
    if name == "qwen2.5-vl":
        return Qwen25VLJudge(path)
    if name == "got-ocr2":
        return GotOcr2Judge(path)
    raise ValueError(f"unknown official judge {name!r}; choose qwen2.5-vl or got-ocr2")
