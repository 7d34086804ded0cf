"""The bundled examples: three small pictures drawn with Pillow, each with a prompt to try.

The PNGs under ``examples/`` are committed; ``python -m gateway.ui.example_images`` redraws them."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
SIZE = 256
# (file, prompt): the prompts match what each picture shows.
EXAMPLES = [
    ("sunset.png", "the sun sets slowly over the sea, gentle waves"),
    ("kite.png", "a red kite flies across a blue sky, clouds drifting"),
    ("forest.png", "wind moves through a green forest at dawn"),
]


def _sky(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    for y in range(SIZE):
        t = y / (SIZE - 1)
        draw.line([(0, y), (SIZE, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    return image


def draw(name: str) -> Image.Image:
    if name == "sunset.png":
        image = _sky((255, 140, 60), (120, 40, 90))
        shapes = ImageDraw.Draw(image)
        shapes.ellipse((88, 110, 168, 190), fill=(255, 220, 120))
        shapes.rectangle((0, 170, SIZE, SIZE), fill=(30, 60, 120))
    elif name == "kite.png":
        image = _sky((90, 160, 240), (200, 230, 255))
        shapes = ImageDraw.Draw(image)
        shapes.polygon([(128, 50), (170, 110), (128, 170), (86, 110)], fill=(220, 30, 40))
        shapes.line([(128, 170), (100, 240)], fill=(60, 60, 60), width=2)
        shapes.ellipse((20, 30, 80, 60), fill=(255, 255, 255))
    else:
        image = _sky((250, 200, 150), (140, 200, 150))
        shapes = ImageDraw.Draw(image)
        for x in range(-10, SIZE, 36):
            shapes.polygon([(x, 230), (x + 24, 90), (x + 48, 230)], fill=(20, 110, 50))
        shapes.rectangle((0, 228, SIZE, SIZE), fill=(60, 90, 40))
    return image


def main() -> None:
    EXAMPLES_DIR.mkdir(exist_ok=True)
    for name, _ in EXAMPLES:
        draw(name).save(EXAMPLES_DIR / name, optimize=True)


if __name__ == "__main__":
    main()
