"""Draw the pack's sample pictures (no photos, no licences: everything is drawn here with PIL).

    python assets/make_sample.py            # assets/sample.png, assets/sample_mask.png
    python assets/make_sample.py --docs     # also docs/mask_prep.png (needs the pack importable)

``sample.png`` (768x512): a sunny landscape - sky, sun, a big cloud, hills, a lake, a house, a tree.
``sample_mask.png``: white where the big cloud is, black elsewhere (the area an inpaint replaces;
the example workflows ask for "a red hot-air balloon in the sky" there).
The drawing is deterministic, so re-running gives the same bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 768, 512
HERE = Path(__file__).resolve().parent
CLOUD = [(430, 92, 530, 162), (480, 62, 590, 152), (550, 86, 640, 158), (455, 118, 615, 172)]


def _sky(draw: ImageDraw.ImageDraw) -> None:
    for y in range(HEIGHT):
        t = y / HEIGHT
        draw.line([(0, y), (WIDTH, y)], fill=(int(90 + 120 * t), int(150 + 80 * t), int(235 - 10 * t)))


def _cloud(draw: ImageDraw.ImageDraw, ellipses, fill) -> None:
    for box in ellipses:
        draw.ellipse(box, fill=fill)


def draw_scene() -> Image.Image:
    picture = Image.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(picture)
    _sky(draw)
    draw.ellipse((88, 48, 168, 128), fill=(255, 226, 110))  # sun
    _cloud(draw, [(250, 160, 310, 195), (280, 145, 345, 190), (270, 170, 360, 200)], (238, 242, 248))  # small cloud
    _cloud(draw, CLOUD, (246, 248, 252))  # the big cloud (masked)
    draw.polygon([(0, 300), (150, 230), (320, 290), (480, 220), (640, 280), (768, 240), (768, 512), (0, 512)],
                 fill=(104, 150, 92))  # far hills
    draw.polygon([(0, 360), (200, 310), (420, 350), (620, 315), (768, 345), (768, 512), (0, 512)],
                 fill=(86, 168, 72))  # near hills
    draw.ellipse((430, 400, 740, 470), fill=(70, 130, 200))  # lake
    draw.ellipse((470, 412, 620, 440), fill=(120, 170, 225))  # reflection
    # House: walls, roof, door, windows.
    draw.rectangle((150, 300, 290, 400), fill=(230, 210, 170))
    draw.polygon([(135, 302), (220, 240), (305, 302)], fill=(180, 60, 50))
    draw.rectangle((205, 345, 235, 400), fill=(110, 70, 40))
    for x in (165, 250):
        draw.rectangle((x, 320, x + 25, 342), fill=(150, 200, 235), outline=(90, 70, 50), width=2)
    # Tree: trunk and crown.
    draw.rectangle((352, 300, 368, 390), fill=(100, 66, 38))
    for box in [(315, 230, 405, 320), (330, 205, 395, 275), (300, 260, 360, 320), (360, 255, 420, 318)]:
        draw.ellipse(box, fill=(52, 122, 56))
    draw.line([(240, 400), (300, 512)], fill=(200, 180, 130), width=24)  # path
    return picture


def draw_mask() -> Image.Image:
    mask = Image.new("L", (WIDTH, HEIGHT), 0)
    _cloud(ImageDraw.Draw(mask), CLOUD, 255)
    return mask


def draw_docs_figure(sample: Image.Image, mask: Image.Image, path: Path) -> None:
    """Original | mask | grown 12 + feathered 16 (outward) | crop (context 0.5), side by side."""
    import torch

    sys.path.insert(0, str(HERE.parent.parent))
    try:
        from comfyui_imgedit.nodes.core import images as img
        from comfyui_imgedit.nodes.core import masks
    except ImportError:
        sys.path.insert(0, str(HERE.parent))
        from nodes.core import images as img  # type: ignore
        from nodes.core import masks  # type: ignore

    picture = img.pil_to_tensor(sample)[None]
    m = masks.mask_from_image(img.pil_to_tensor(mask)[None], 0.5, False)
    prepared = masks.feather_mask(masks.grow_mask(m, 12, "round"), 16, "outward")
    crop, _, _ = masks.crop_to_mask(picture, prepared, 0.5, 1024, 8)
    panels = [sample, img.mask_to_pil(m[0]).convert("RGB"), img.mask_to_pil(prepared[0]).convert("RGB"),
              img.tensor_to_pil(crop[0])]
    titles = ["original", "mask", "grown 12 + feathered 16", "crop (context 0.5)"]
    height = 192
    scaled = [p.resize((max(1, round(p.width * height / p.height)), height), Image.LANCZOS) for p in panels]
    gap, label = 8, 22
    figure = Image.new("RGB", (sum(p.width for p in scaled) + gap * (len(scaled) + 1), height + label + 2 * gap), "white")
    draw = ImageDraw.Draw(figure)
    x = gap
    for panel, title in zip(scaled, titles):
        figure.paste(panel, (x, gap))
        draw.text((x + 2, gap + height + 5), title, fill=(30, 30, 30))
        x += panel.width + gap
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Draw the sample pictures.")
    parser.add_argument("--docs", action="store_true", help="also write docs/mask_prep.png")
    args = parser.parse_args()
    sample = draw_scene().filter(ImageFilter.SMOOTH)
    mask = draw_mask()
    sample.save(HERE / "sample.png", optimize=True)
    mask.save(HERE / "sample_mask.png", optimize=True)
    if args.docs:
        draw_docs_figure(sample, mask, HERE.parent / "docs" / "mask_prep.png")


if __name__ == "__main__":
    main()
