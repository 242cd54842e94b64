"""Consistent attention on a GPU: step time, seconds per panel, peak device memory against story length.

Three parts, measured in one process and written as one section of ``benchmarks/RESULTS.md``:

1. **Step time.** One UNet forward with CFG at each size, interleaved rounds: plain, consistent write
   (the identity pass), consistent read from a bank in host memory (with and without the side-stream
   prefetch) and from a bank on the device (with and without cached projections).
2. **Stories.** ``StoryPipeline.generate`` of a 10-panel and a 100-panel story (one character, identity
   mode) at each size: seconds per panel and peak allocated device memory (``torch.cuda`` allocator
   statistics), next to the memory planner's prediction for the same story and settings.
3. **Exactness.** The same panels drawn with the bank on the host with prefetch, on the host without it,
   and on the device: their bytes must agree.

With weights on the machine use ``--model sdxl-base`` (or any model ``generate`` takes); without them
``--random-weights`` builds the model's full-size architecture from its public configs with random
weights (speed and memory do not depend on the values; the pictures are noise). On a CPU the tiny
model runs the same code in seconds, which is how CI keeps this script from rotting::

    python benchmarks/gpu.py --random-weights --model sdxl-base --sizes 768,1024 --out benchmarks/RESULTS.md
    python benchmarks/gpu.py --model tiny-sdxl --sizes 64 --panels 3,6 --steps 3   # CPU smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from datetime import datetime, timezone

import torch
from compose_pages import publish_section
from step_timing import ID_IMAGES, step_table, step_variants, synchronize, time_steps

from storydiffusion.bank import IdentityBank
from storydiffusion.memory_model import build_skeleton, model_configs
from storydiffusion.memory_plan import MemoryPlanner
from storydiffusion.pipeline import StoryPipeline
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import story_from_text

SECTION = "## GPU: step time, seconds per panel, peak device memory"
CAST = "[Mia] a girl with curly black hair and a red dress\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sdxl-base")
    parser.add_argument("--random-weights", action="store_true", help="full-size architecture, random weights")
    parser.add_argument("--sizes", default="768,1024", help="panel sizes (square), comma-separated")
    parser.add_argument("--panels", default="10,100", help="story lengths, comma-separated")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--window", type=int, default=4, help="panels per read batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds of the step variants")
    parser.add_argument("--out", help="RESULTS.md to write the section into (default: print only)")
    return parser.parse_args(argv)


def load_pipeline(args: argparse.Namespace) -> StoryPipeline:
    """The model with real weights, or its full-size architecture with random ones (built on the GPU)."""
    if not args.random_weights:
        return StoryPipeline.from_pretrained(args.model, local_files_only=True)
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel

    from storydiffusion.tokenizer import build_clip_tokenizer

    configs, spec = model_configs(args.model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    skeleton = build_skeleton(configs)  # for the scheduler and the text encoders' classes
    with device:
        unet = UNet2DConditionModel(**configs.unet).to(dtype)
        vae = AutoencoderKL(**configs.vae).to(dtype)
        texts = [type(module)(module.config).to(dtype) for module in skeleton.text_encoders]
    parts = dict(vae=vae, unet=unet, scheduler=skeleton.scheduler, text_encoder=texts[0])
    parts["tokenizer"] = build_clip_tokenizer()
    if configs.family == "sdxl":
        parts.update(text_encoder_2=texts[1], tokenizer_2=build_clip_tokenizer(pad_token="!"))
        pipe = StableDiffusionXLPipeline(**parts)
    else:
        pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None)
    return StoryPipeline(pipe.to(device), spec)


def story(panels: int):
    lines = [f"[Mia] walks past house number {n}" for n in range(1, panels + 1)]
    return story_from_text(CAST, "\n".join(lines), title="Long walk")


# ------------------------------------------------------------------------------------------------
# Stories
# ------------------------------------------------------------------------------------------------


def run_story(pipeline: StoryPipeline, panels: int, settings: GenerationSettings, storage: str = "auto"):
    """Seconds, peak allocated device bytes (in all, while denoising, while decoding) and the result of one story."""
    cuda = torch.cuda.is_available()
    phases = {"denoise": 0, "decode": 0}
    vae = pipeline.pipe.vae
    decode = vae.decode

    def measured_decode(*args, **kwargs):  # the allocator's peak before a decode is the denoising's
        synchronize()
        phases["denoise"] = max(phases["denoise"], torch.cuda.max_memory_allocated() if cuda else 0)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        decoded = decode(*args, **kwargs)
        synchronize()
        phases["decode"] = max(phases["decode"], torch.cuda.max_memory_allocated() if cuda else 0)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        return decoded

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    vae.decode = measured_decode
    synchronize()
    started = time.perf_counter()
    try:
        result = pipeline.generate(story(panels), settings, bank_storage=storage)
    finally:
        del vae.decode
    synchronize()
    seconds = time.perf_counter() - started
    return seconds, max(phases.values()), phases, result


def predicted_peaks(pipeline: StoryPipeline, panels: int, settings: GenerationSettings, model: str) -> dict[str, int]:
    """The planner's device peaks (host on a CPU run) of the same story: denoising phases and the decode."""
    planner = MemoryPlanner(story(panels), settings, model, device=pipeline.device.type, dtype="auto")
    plan = planner.predict(planner.requested())
    where = "device" if pipeline.device.type == "cuda" else "host"
    peak = {phase.name: getattr(phase, where) for phase in plan.phases}
    return {"denoise": max(v for k, v in peak.items() if k != "VAE decode"), "decode": peak["VAE decode"]}


@contextlib.contextmanager
def reads_recorded(prefetch: bool = True):
    """Within it, runs record their bank's prefetcher (to count hits) and, without ``prefetch``, have none."""
    original = IdentityBank.start_reads
    prefetchers = []

    def start_reads(bank: IdentityBank, device, projection_budget=None, **_asked) -> IdentityBank:
        original(bank, device, projection_budget, prefetch=prefetch)
        prefetchers.append(bank.prefetcher)
        return bank

    IdentityBank.start_reads = start_reads
    try:
        yield prefetchers
    finally:
        IdentityBank.start_reads = original


def exactness(pipeline: StoryPipeline, settings: GenerationSettings) -> tuple[bool, int]:
    """The same 6 panels with the bank on the host (prefetch on, then off) and on the device: identical
    bytes? And how many reads found their tokens prefetched."""
    small = dataclasses.replace(settings, steps=min(settings.steps, 4))
    runs, hits = [], 0
    for storage, prefetch in (("auto", True), ("auto", False), ("device", True)):
        with reads_recorded(prefetch) as prefetchers:
            runs.append(pipeline.generate(story(6), small, bank_storage=storage))
        hits += sum(p.hits for p in prefetchers if p is not None)
    same = all(len({panel.image.tobytes() for panel in panels}) == 1 for panels in zip(*(r.panels for r in runs)))
    return same, hits


def bank_placements(pipeline: StoryPipeline, panels: int, settings: GenerationSettings) -> list[str]:
    """Seconds per panel of one story with the bank on the host (prefetch on, off) and on the device."""
    lines = [f"Where the bank lives, {panels} panels at {settings.width}x{settings.height}:", ""]
    lines += ["| bank | seconds | s per panel | vs device bank |", "|---|---:|---:|---:|"]
    timed = {}
    for name, storage, prefetch in (
        ("device (projections cached)", "device", True),
        ("host, prefetch a step ahead", "auto", True),
        ("host, no prefetch", "auto", False),
    ):
        with reads_recorded(prefetch):
            timed[name] = run_story(pipeline, panels, settings, storage)[0]
    for name, seconds in timed.items():
        lines.append(
            f"| {name} | {seconds:.1f} | {seconds / panels:.3f} | {seconds / timed['device (projections cached)']:.3f}x |"
        )
    return lines + [""]


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def device_name(pipeline: StoryPipeline) -> str:
    if pipeline.device.type == "cuda":
        return f"{torch.cuda.get_device_name(pipeline.device)} (CUDA {torch.version.cuda})"
    return f"{pipeline.device.type} ({torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(v) for v in args.sizes.split(",")]
    lengths = [int(v) for v in args.panels.split(",")]
    built = time.perf_counter()
    pipeline = load_pipeline(args)
    built = time.perf_counter() - built
    lines = [SECTION, "", f"Recorded {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with:", ""]
    lines += [f"    python benchmarks/gpu.py {' '.join(argv if argv is not None else sys.argv[1:])}", ""]
    weights = "random weights, full-size architecture from the public configs" if args.random_weights else "its weights"
    lines += [
        f"- device: {device_name(pipeline)}; torch {torch.__version__}; dtype {str(pipeline.pipe.unet.dtype).removeprefix('torch.')}",
        f"- model: {args.model} ({weights}); built in {built:.0f} s",
        f"- {args.steps} steps, first consistent step {min(2, args.steps // 2)}, {ID_IMAGES} identity images, "
        f"sampling rate 0.5, read batches of {args.window} panels",
        "",
    ]
    stories = [
        "| size | panels | seconds | s per panel | peak device memory | denoising: measured / planned | "
        "VAE decode: measured / planned |"
    ]
    stories.append("|---:|---:|---:|---:|---:|---:|---:|")
    peaks: dict[int, dict[int, int]] = {}
    all_settings: list[GenerationSettings] = []
    for size in sizes:
        settings = GenerationSettings(
            steps=args.steps, height=size, width=size, id_images=ID_IMAGES, window=args.window
        )
        settings = pipeline.resolve_settings(story(2), settings)
        all_settings.append(settings)
        seconds = time_steps(pipeline, step_variants(pipeline, size, settings, args.window), args.repeats)
        lines += step_table(size, seconds)
        print("\n".join(step_table(size, seconds)), flush=True)
        for panels in lengths:
            elapsed, peak, phases, _ = run_story(pipeline, panels, settings)
            predicted = predicted_peaks(pipeline, panels, settings, args.model)
            peaks.setdefault(size, {})[panels] = peak
            versus = [f"{phases[k] / 2**30:.2f} / {predicted[k] / 2**30:.2f} GiB" for k in ("denoise", "decode")]
            stories.append(
                f"| {size} | {panels} | {elapsed:.1f} | {elapsed / panels:.2f} | {peak / 2**30:.2f} GiB "
                f"| {versus[0]} | {versus[1]} |"
            )
            print(stories[-1], flush=True)
    lines += ["Whole stories (`StoryPipeline.generate`, identity mode, one character):", "", *stories, ""]
    for size, by_length in peaks.items():
        small, large = min(by_length), max(by_length)
        if by_length[small]:
            ratio = by_length[large] / by_length[small]
            lines.append(
                f"- {size}x{size}: peak device memory {large} panels / {small} panels: **{ratio:.3f}x** (goal: at most 1.1x)"
            )
    placement = bank_placements(pipeline, max(lengths), all_settings[0])
    print("\n".join(placement), flush=True)
    lines += placement
    same, hits = exactness(
        pipeline, GenerationSettings(steps=args.steps, height=sizes[0], width=sizes[0], id_images=ID_IMAGES)
    )
    lines += [
        f"- exactness: 6 panels with the bank on the host with prefetch, without it, and on the device: "
        f"{'byte-identical' if same else 'DIFFERENT'} ({hits} reads found their tokens prefetched)",
        "",
    ]
    publish_section("\n".join(lines), args.out)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
