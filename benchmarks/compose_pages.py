"""How long composing takes: 100 random 1024x1024 panels into comic pages and a PDF.

Stages are timed separately (pagination, drawing the pages with and without lettering, PNG pages,
PDF, CBZ), each repeated, and then the whole ``compose_run`` of a run folder on disk, which is what
``python -m storydiffusion compose`` does. The result replaces the ``## Composing pages`` section of
``benchmarks/RESULTS.md`` (other sections are kept)::

    python benchmarks/compose_pages.py --out benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import PIL
from PIL import Image, ImageChops, ImageDraw, features

from storydiffusion.atomic import atomic_write_bytes, write_json
from storydiffusion.layout.compose import compose_run
from storydiffusion.layout.export import encode_png, write_cbz, write_pages_png, write_pdf
from storydiffusion.layout.paginate import paginate
from storydiffusion.layout.render import make_lettering, render_pages
from storydiffusion.layout.template_files import load_template
from storydiffusion.rundir import MANIFEST_FORMAT, panel_filename
from storydiffusion.story import story_from_text

SECTION = "## Composing pages"


def random_panel(seed: int, size: int) -> Image.Image:
    """A random picture with broad colour areas, shapes and fine grain, like a generated panel
    (pure noise would make PNG encoding unrealistically slow, flat colour unrealistically fast)."""
    rng = random.Random(seed)
    field = Image.frombytes("RGB", (6, 6), bytes(rng.randrange(256) for _ in range(108)))
    image = field.resize((size, size), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y, r = rng.randrange(size), rng.randrange(size), rng.randrange(size // 40, size // 6)
        draw.ellipse(
            (x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)), outline=(0, 0, 0), width=3
        )
    grain = Image.effect_noise((size, size), 18).convert("RGB")
    return ImageChops.add(image, grain, scale=1.0, offset=-128)


def story_for(count: int):
    """A story with a caption and a speech line on every panel, so lettering is timed too."""
    lines = "\n".join(
        f"[Ada] walks through scene {i + 1} # Day {i + 1}: the road goes on. @Ada: Still {count - i} to go!"
        for i in range(count)
    )
    return story_from_text("[Ada] a woman with a red scarf", lines, title="Benchmark Story")


def timed(function, repeats: int):
    """(median seconds, min seconds, last result)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panels", type=int, default=100)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--layout", default="classic")
    parser.add_argument("--dpi", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="RESULTS.md to write the section into (default: print only)")
    args = parser.parse_args(argv)

    template = load_template(args.layout, dpi=args.dpi)
    story = story_for(args.panels)
    start = time.perf_counter()
    panels = [random_panel(i, args.size) for i in range(args.panels)]
    make_s = time.perf_counter() - start
    sizes = [p.size for p in panels]
    title = story.title
    rows: list[tuple[str, float, float]] = []

    med, low, layouts = timed(lambda: paginate(template, sizes, title=True), args.repeats)
    rows.append(("paginate", med, low))
    med, low, plain = timed(
        lambda: render_pages(layouts, panels, story, template, title=title, lettering=False), args.repeats
    )
    rows.append(("draw pages: fit panels (Lanczos) + borders", med, low))
    try:
        letterer = make_lettering(template)
        lettering_note = "captions, speech bubbles and title from the bundled fonts"
    except ModuleNotFoundError:
        letterer, lettering_note = None, "lettering module not available: not timed"
    if letterer is not None:
        med, low, pages = timed(
            lambda: render_pages(layouts, panels, story, template, title=title, lettering=letterer), args.repeats
        )
        rows.append(("draw pages with lettering", med, low))
    else:
        pages = plain
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        med, low, encoded = timed(lambda: [encode_png(p) for p in pages], args.repeats)
        rows.append(("encode PNG pages", med, low))
        med, low, _ = timed(lambda: write_pages_png(encoded, folder / "pages"), args.repeats)
        rows.append(("write PNG pages (atomic)", med, low))
        med, low, _ = timed(lambda: write_pdf(pages, folder / "comic.pdf", template.dpi, title=title), args.repeats)
        rows.append(("write PDF", med, low))
        pdf_bytes = (folder / "comic.pdf").stat().st_size
        med, low, _ = timed(lambda: write_cbz(encoded, folder / "comic.cbz", title, False), args.repeats)
        rows.append(("write CBZ (pages already encoded)", med, low))
        png_bytes = sum(len(b) for b in encoded)

        # The command: a run folder on disk, panels read from PNG files one at a time.
        run = folder / "run"
        write_json(run / "story.json", {"format": MANIFEST_FORMAT, "story": story.to_dict()})
        for i, panel in enumerate(panels):
            path = run / "panels" / panel_filename(i)
            path.parent.mkdir(parents=True, exist_ok=True)
            panel.save(path, compress_level=1)
        panels = plain = pages = encoded = []  # free the images before the end-to-end run
        e2e_med, e2e_low, result = timed(
            lambda: compose_run(run, layout=args.layout, export=("png", "pdf"), dpi=args.dpi), args.repeats
        )
        page_count = len(result.pages)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    lines = [
        SECTION,
        "",
        f"Recorded {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with:",
        "",
        f"    python benchmarks/compose_pages.py --panels {args.panels} --size {args.size} --layout {args.layout}"
        + (f" --dpi {args.dpi}" if args.dpi else "")
        + f" --repeats {args.repeats} --out benchmarks/RESULTS.md",
        "",
        f"- {args.panels} random {args.size}x{args.size} panels (colour fields, shapes, grain; made in {make_s:.1f} s, not timed below)",
        f"- layout `{template.name}`: {template.width}x{template.height} px pages at {template.dpi} dpi, {page_count} pages, title band on page 1",
        f"- lettering: {lettering_note}",
        f"- machine: {os.cpu_count()} logical CPUs ({platform.machine()}), Python {platform.python_version()}, Pillow {PIL.__version__}"
        f" (libjpeg-turbo {'yes' if features.check_feature('libjpeg_turbo') else 'no'}), single thread",
        f"- median and minimum of {args.repeats} runs; process peak RSS {peak_mb:.0f} MB",
        "",
        "| stage | median s | min s |",
        "|---|---:|---:|",
        *[f"| {name} | {med:.3f} | {low:.3f} |" for name, med, low in rows],
        f"| **`compose_run`: read {args.panels} panel PNGs, lay out, draw with lettering, write PNG pages + `pages.json` + PDF** | **{e2e_med:.2f}** | **{e2e_low:.2f}** |",
        "",
        f"Output: {png_bytes / 2**20:.1f} MB of PNG pages, a {pdf_bytes / 2**20:.1f} MB PDF (pages stored as JPEG, quality 92)."
        f" That is {e2e_med / args.panels * 1000:.0f} ms per panel end to end: changing the layout of a {args.panels}-panel story takes"
        f" {e2e_med:.0f} s, against minutes to regenerate it.",
        "",
    ]
    publish_section("\n".join(lines), args.out)
    return 0


def publish_section(section: str, out: str | None) -> None:
    """Print a benchmark's section and, with ``--out``, write it into RESULTS.md (``write_section``)."""
    print(section)
    if out:
        write_section(Path(out), section)


def write_section(path: Path, section: str) -> None:
    """Replace the section of RESULTS.md that ``section``'s first line (its ``## `` heading) names, or
    append it; other sections stay as they are. Other benchmarks write their sections with it too."""
    heading = section.splitlines()[0].rstrip()
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        new = text.rstrip("\n") + ("\n\n" if text.strip() else "") + section
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ") or lines[i].startswith("# ")),
            len(lines),
        )
        rest = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + rest if rest else "")
    atomic_write_bytes(path, (new.rstrip("\n") + "\n").encode("utf-8"))


if __name__ == "__main__":
    sys.exit(main())
