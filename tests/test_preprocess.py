import numpy as np
import pytest
from PIL import Image

from xomni.tokenizer.preprocess import RULES, load_image, prepare_image, target_size


def test_paper_rule_sizes():
    rule = RULES["paper"]
    assert target_size(384, 384, rule) == (384, 384)
    assert target_size(200, 300, rule) == (384, 576)  # short side up to 384
    assert target_size(3000, 2000, rule) == (1152, 768)  # long side down to 1152
    w, h = target_size(1000, 700, rule)
    assert w % 16 == 0 and h % 16 == 0


def test_too_small_or_too_elongated_is_refused():
    with pytest.raises(ValueError, match="minimum side"):
        target_size(100, 400, RULES["paper"])
    with pytest.raises(ValueError, match="aspect"):
        target_size(1300, 400, RULES["paper"])
    with pytest.raises(ValueError, match="minimum side"):
        prepare_image(Image.new("RGB", (40, 80)), "tiny")


def test_modes_are_converted(tmp_path):
    rgba = Image.new("RGBA", (128, 128), (255, 0, 0, 0))  # fully transparent red -> white
    assert prepare_image(rgba).getpixel((5, 5)) == (255, 255, 255)
    grey = Image.new("L", (128, 128), 100)
    assert prepare_image(grey).getpixel((0, 0)) == (100, 100, 100)
    pal = Image.new("RGB", (128, 128), (10, 200, 30)).convert("P", palette=Image.ADAPTIVE)
    assert prepare_image(pal).mode == "RGB"
    ramp = np.tile(np.linspace(0, 65535, 128).astype(np.uint16), (128, 1))  # a 16-bit greyscale gradient
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    row = np.asarray(load_image(tmp_path / "deep.png"))[0, :, 0]
    assert row[0] == 0 and row[-1] == 255 and abs(int(row[64]) - 129) <= 1  # scaled by its range, not clipped
    eight = Image.fromarray(np.full((128, 128), 200, np.int32))  # mode I holding 8-bit values: kept as they are
    assert prepare_image(eight).getpixel((0, 0)) == (200, 200, 200)
    photo = Image.new("RGB", (200, 100), (200, 30, 30))
    exif = photo.getexif()
    exif[0x0112] = 6  # EXIF orientation: the camera was turned, the pixels stored sideways
    photo.save(tmp_path / "turned.jpg", exif=exif)
    assert load_image(tmp_path / "turned.jpg").size == (100, 200)


def test_bad_files_raise_clear_errors(tmp_path):
    (tmp_path / "note.png").write_text("not an image")
    with pytest.raises(ValueError, match="not an image"):
        load_image(tmp_path / "note.png")
    Image.new("RGB", (128, 128), (1, 2, 3)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        load_image(tmp_path / "cut.png")
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
    assert load_image(tmp_path / "ok.png").size == (128, 128)
