"""Draw the DisCoM-KD Studio application icon with Pillow.

Writes, under resources/icons/:
  app.png                                   512x512 master
  hicolor/<N>x<N>/apps/discomkd-studio.png  N in 16..512, freedesktop icon theme layout
  app.ico                                   multi-size Windows icon
  app.icns                                  macOS icon

Design: a rounded square with a deep blue to teal gradient; two overlapping
shapes (a circle and a square, the two modalities, their shared part in white)
and an arrow to one output (the distilled student). Drawn at 4x and downsampled.

Run once from the repository root:  python scripts/make_icons.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "resources" / "icons"

SS = 4  # supersampling factor (must be >= 2 for the 1024 px ICNS image)
BASE = 512
S = BASE * SS

TOP_LEFT = (18, 52, 120)  # deep blue
BOTTOM_RIGHT = (0, 150, 150)  # teal
CIRCLE = (120, 225, 240)  # light cyan
SQUARE = (255, 196, 92)  # warm amber
WHITE = (255, 255, 255)

HICOLOR_SIZES = (16, 32, 48, 64, 128, 256, 512)
ICO_SIZES = [(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)]


def px(v: float) -> int:
    """Scale a coordinate given on the 512 grid to the supersampled canvas."""
    return round(v * SS)


def gradient() -> Image.Image:
    """Diagonal gradient from TOP_LEFT to BOTTOM_RIGHT."""
    small = 256
    g = Image.new("RGB", (small, small))
    pix = g.load()
    for y in range(small):
        for x in range(small):
            t = (x + y) / (2 * (small - 1))
            pix[x, y] = tuple(round(a + (b - a) * t) for a, b in zip(TOP_LEFT, BOTTOM_RIGHT))
    return g.resize((S, S), Image.BICUBIC)


def rounded_mask(margin: float, radius: float) -> Image.Image:
    m = Image.new("L", (S, S), 0)
    ImageDraw.Draw(m).rounded_rectangle(
        (px(margin), px(margin), S - 1 - px(margin), S - 1 - px(margin)), radius=px(radius), fill=255
    )
    return m


def soften(mask: Image.Image, radius: float) -> Image.Image:
    """Round the convex corners of a binary mask (blur, then re-threshold)."""
    blurred = mask.filter(ImageFilter.GaussianBlur(px(radius)))
    return blurred.point(lambda v: 255 if v >= 128 else 0)


def draw_master() -> Image.Image:
    """The icon on the supersampled (SS x 512) canvas."""
    canvas = Image.new("RGBA", (S, S), (0, 0, 0, 0))

    # Background tile.
    bg = gradient().convert("RGBA")
    bg.putalpha(rounded_mask(margin=16, radius=96))
    canvas.alpha_composite(bg)

    # Soft highlight across the upper half of the tile.
    hl = Image.new("L", (S, S), 0)
    ImageDraw.Draw(hl).ellipse((px(-120), px(-330), px(632), px(250)), fill=22)
    hl = hl.filter(ImageFilter.GaussianBlur(px(6)))
    hl = ImageChops.multiply(hl, rounded_mask(margin=16, radius=96))
    canvas.alpha_composite(Image.merge("RGBA", (*Image.new("RGB", (S, S), WHITE).split(), hl)))

    # Two modalities: circle (upper left) and square (lower left), overlapping.
    circle = Image.new("L", (S, S), 0)
    ImageDraw.Draw(circle).ellipse((px(58), px(132), px(234), px(308)), fill=255)
    square = Image.new("L", (S, S), 0)
    ImageDraw.Draw(square).rounded_rectangle((px(138), px(214), px(300), px(376)), radius=px(24), fill=255)
    overlap = ImageChops.multiply(circle, square)  # what the two modalities share

    # Arrow to the right: the single distilled model.
    cy = 256
    shaft = Image.new("L", (S, S), 0)
    ImageDraw.Draw(shaft).rounded_rectangle((px(318), px(cy - 26), px(400), px(cy + 26)), radius=px(8), fill=255)
    head = Image.new("L", (S, S), 0)
    ImageDraw.Draw(head).polygon([(px(370), px(cy - 84)), (px(464), px(cy)), (px(370), px(cy + 84))], fill=255)
    arrow = ImageChops.lighter(shaft, soften(head, radius=8))

    def layer(color: tuple[int, int, int], mask: Image.Image, alpha: float = 1.0) -> Image.Image:
        im = Image.new("RGBA", (S, S), color + (0,))
        im.putalpha(mask.point(lambda v: round(v * alpha)))
        return im

    shadow = (8, 28, 64)
    for mask in (circle, square, arrow):
        canvas.alpha_composite(layer(shadow, mask, alpha=0.22), dest=(0, px(6)))
    canvas.alpha_composite(layer(CIRCLE, circle))
    canvas.alpha_composite(layer(SQUARE, square))
    canvas.alpha_composite(layer(WHITE, overlap))
    canvas.alpha_composite(layer(WHITE, arrow))

    return canvas


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    big = draw_master()
    master = big.resize((BASE, BASE), Image.LANCZOS)
    master.save(OUT / "app.png", optimize=True)

    for n in HICOLOR_SIZES:
        d = OUT / "hicolor" / f"{n}x{n}" / "apps"
        d.mkdir(parents=True, exist_ok=True)
        master.resize((n, n), Image.LANCZOS).save(d / "discomkd-studio.png", optimize=True)

    master.save(OUT / "app.ico", format="ICO", sizes=ICO_SIZES)
    # ICNS holds a 1024 px (512@2x) image; give it real detail rather than an upscale.
    big.resize((1024, 1024), Image.LANCZOS).save(OUT / "app.icns", format="ICNS")
    print(f"icons written to {OUT}")


if __name__ == "__main__":
    main()
