"""Reward adapters for the paper's model judges, loaded from local folders (`pip install -e .[judges]`; nothing is
fetched from a hub). Each is a reward function with the package's one signature: rollouts -> one value per rollout
(None: does not apply; NaN: the judge failed on it).

- `HPSv2Reward`: human preference (HPSv2 is an OpenCLIP ViT-H/14 fine-tuned on preference pairs; its score is the
  cosine between image and prompt embeddings). Expects the checkpoint in transformers' `CLIPModel` layout (a folder
  with config.json, the weights and the CLIP tokenizer/processor files); the official OpenCLIP .pt must be converted
  first. Returns the cosine.
- `VLMAlignmentReward`: prompt-image alignment by Qwen2.5-VL (X-Omni's alignment judge): the share of the DPG-style
  yes/no questions the prompt raises (`xomni.rewards.prompt_questions`, as the scene judge's alignment asks them) it
  answers "yes", with DPG's cascade over dependent questions.
- `UnifiedRewardScore`: an overall-quality score from a Qwen2.5-VL-based reward model such as UnifiedReward: asked
  to rate the image for the prompt from 1 to 5; the rating `read_rating` finds in the reply, mapped to [0, 1]. The
  question's wording is ours, not UnifiedReward's training template: check it against the model card before
  trusting numbers.
A rollout without a prompt (`Rollout.prompt` "") is judged against its scene's dense caption.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from xomni.errors import MissingPart
from xomni.eval.official_judges import Qwen25VLJudge, _check_folder, _device
from xomni.data.world import prompts
from xomni.rewards import Rollout, prompt_questions

RATING_PROMPT = ("Rate how well this image matches the description and how good it looks, from 1 (poor) to 5 "
                 "(excellent). Description: {prompt}\nReply with one digit.")


def _prompt(r: Rollout) -> str:
    """What the rollout was asked: its prompt, or its scene's dense caption when it has none."""
    return r.prompt or prompts(r.scene)["dense"]


def _projected(features) -> torch.Tensor:
    """CLIP's projected embeddings: transformers 5 returns them as the output's `pooler_output` (4.x: the tensor)."""
    return features if torch.is_tensor(features) else features.pooler_output


class HPSv2Reward:
    def __init__(self, path: str | Path):
        try:
            from transformers import CLIPModel, CLIPProcessor
        except ImportError as e:  # pragma: no cover - transformers is a core dependency
            raise MissingPart(f"transformers' CLIP is unavailable: {e}") from e
        path = _check_folder(path, "HPSv2 (transformers CLIPModel layout)")
        self.model = CLIPModel.from_pretrained(path).to(_device()).eval()
        self.processor = CLIPProcessor.from_pretrained(path)
        self.name = f"hpsv2:{path.name}"

    @torch.no_grad()
    def __call__(self, rollouts: list[Rollout]) -> list[float | None]:
        out: list[float | None] = []
        for r in rollouts:
            try:
                inputs = self.processor(text=[_prompt(r)], images=[r.image.convert("RGB")], return_tensors="pt",
                                        padding=True, truncation=True).to(self.model.device)
                img = _projected(self.model.get_image_features(pixel_values=inputs["pixel_values"]))
                txt = _projected(self.model.get_text_features(input_ids=inputs["input_ids"],
                                                              attention_mask=inputs["attention_mask"]))
                out.append(float(torch.cosine_similarity(img, txt).item()))
            except Exception:  # noqa: BLE001 - a failed judgement is NaN, excluded and counted by `combine`
                out.append(math.nan)
        return out


class VLMAlignmentReward:
    def __init__(self, judge_or_path):
        """A `Qwen25VLJudge`-like object (anything with `answer(image, question) -> str`) or a local folder."""
        self.judge = judge_or_path if hasattr(judge_or_path, "answer") else Qwen25VLJudge(judge_or_path)

    def __call__(self, rollouts: list[Rollout]) -> list[float | None]:
        from xomni.eval.dpg import Question, cascade

        out: list[float | None] = []
        for r in rollouts:
            qs = prompt_questions(r)
            if not qs:
                out.append(None)
                continue
            try:
                raw = {q["qid"]: float(self.judge.answer(r.image, q["text"]) == "yes") for q in qs}
            except Exception:  # noqa: BLE001
                out.append(math.nan)
                continue
            questions = [Question(q["qid"], q["text"], tuple(q["parents"]), q["category"]) for q in qs]
            scores = cascade(questions, raw)
            out.append(sum(scores.values()) / len(scores))
        return out


class UnifiedRewardScore:
    def __init__(self, judge_or_path):
        self.judge = judge_or_path if hasattr(judge_or_path, "_ask") else Qwen25VLJudge(judge_or_path)

    def __call__(self, rollouts: list[Rollout]) -> list[float | None]:
        out: list[float | None] = []
        for r in rollouts:
            try:
                reply = self.judge._ask(r.image.convert("RGB"), RATING_PROMPT.format(prompt=_prompt(r)), 8)
            except Exception:  # noqa: BLE001
                out.append(math.nan)
                continue
            rating = read_rating(reply)
            out.append((rating - 1) / 4 if rating is not None else math.nan)
        return out


def read_rating(reply: str) -> int | None:
    """The 1-5 rating in a judge's reply: its leading digit ("4", "4 out of 5"), a digit out of 5 ("Rating: 4/5", "a
    4 out of 5"), one after "rating"/"score"/"rate" ("Score: 3 (on a 1-5 scale)"), else its one standalone digit
    ("I would say 4."); None when there is none or several ("on a scale of 1 to 5": the scale, not a rating)."""
    reply = reply.strip()
    for pattern in (r"^([1-5])\b", r"\b([1-5])\s*(?:/\s*5|out of 5)\b", r"(?i)\b(?:rating|score|rate)\b\D{0,12}?\b([1-5])\b"):
        if found := re.search(pattern, reply):
            return int(found.group(1))
    digits = set(re.findall(r"\b([0-9])\b", reply))
    return int(digits.pop()) if len(digits) == 1 and digits <= set("12345") else None
