"""The ``storydiffusion`` command's arguments: one function per subcommand, help read from the settings table."""

from __future__ import annotations

import argparse
import re
from typing import NoReturn

from .cli_checks import decimal_value, folder_value, whole_value
from .cli_evaluation import add_benchmark, add_evaluate
from .errors import shown
from .settings import CONSISTENCY_MODES, DEFAULT_FPS, DEFAULT_FRAMES, MAX_FACTOR, SETTING_RANGES
from .structured import plain_digits

__all__ = ["CommandParser", "build_parser"]

EXIT_USAGE = 2
_MISSING_VALUE = re.compile(r"argument (-[-\w]+)(?:/-[-\w]+)*: expected one argument")

_LONG_QUOTED = re.compile(r"'([^']{60})([^']{20,})'")


# Options naming a file, a model or a setting: empty, they would mean the default (or no bank) without a word.
# (--model, --lora, --layout and --export say so in their own words; texts such as --prompt may be empty.)
NAMED_VALUES = frozenset(
    "face_model scheduler bank device dtype predictor encoder image_encoder dreamsim fit kind variants vary".split()
)


class CommandParser(argparse.ArgumentParser):
    """argparse with the CLI's error rule: one ``error:`` line that says what to type, then exit code 2.

    argparse's own error prints the whole usage block, which hides the one line that matters.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {_with_hint(message)} (see {self.prog} --help)\n")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]):
        """An empty name (an unset shell variable) is refused: it would silently mean the default, or nothing."""
        if action.dest in NAMED_VALUES and action.option_strings and arg_strings and not arg_strings[0].strip():
            flag = action.option_strings[0]
            self.error(f"argument {flag}: is empty: give a value, or leave {flag} out (an unset shell variable?)")
        return super()._get_values(action, arg_strings)


def _with_hint(message: str) -> str:
    """A value that starts with '-' (``-inf``, ``-1e3``) reads as an option name unless written with '='. A huge
    value argparse quotes back (an invalid choice or number) is cut short, so the message stays one line."""
    message = _LONG_QUOTED.sub(lambda m: f"'{m[1]}...' ({len(m[1]) + len(m[2]):,} characters)", message)
    missing = _MISSING_VALUE.fullmatch(message)
    if missing is None:
        return " ".join(message.split())
    flag = missing.group(1)
    return f"{message}: give a value after {flag}; a value starting with '-' is written with '=', e.g. {flag}=-1"


def _rate(text: str) -> float | dict[int, float]:
    """``0.5`` or per downsampling factor ``1:0.5,2:0.3`` (factors 0..MAX_FACTOR, each once; 0: the others)."""
    try:
        if ":" in text:
            pairs = [(int(k) if plain_digits(k) else -1, float(v)) for k, v in (p.split(":") for p in text.split(","))]
            rates = dict(pairs)
            if len(rates) == len(pairs) and all(0 <= factor <= MAX_FACTOR for factor in rates):
                return rates
            raise ValueError  # a factor given twice, or out of range
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a rate such as 0.5 or 1:0.5,2:0.3 (factors 0..{MAX_FACTOR}), got {shown(text)}"
        ) from None


def _panel_list(text: str) -> list[int]:
    """``2,5`` -> [1, 4]: ASCII digits only (``int`` would also take '٣' and ' +2'), no empty item (``1,,2``)."""
    parts = [part.strip() for part in text.split(",")]
    if not all(plain_digits(part) for part in parts):
        raise argparse.ArgumentTypeError(f"expected 1-based panel numbers such as 2,5, got {shown(text)}")
    if too_long := next((part for part in parts if len(part) > 9), None):
        raise argparse.ArgumentTypeError(
            f"panel {shown(too_long)} does not exist: a story has fewer than a billion panels"
        )
    return [int(part) - 1 for part in parts]


def _allowed(name: str, text: str = "") -> str:
    """Help text ending in the setting's allowed range, read from settings.SETTING_RANGES."""
    allowed = f"allowed {SETTING_RANGES[name].describe()}"
    return f"{text} ({allowed})" if text else allowed


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="storydiffusion", description="Character-consistent visual stories.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_generate(commands.add_parser("generate", help="generate the panels of a story file"))
    _add_compose(
        commands.add_parser(
            "compose", help="lay out the panels of a run folder as comic pages (no image is regenerated)"
        )
    )
    _add_animate(
        commands.add_parser("animate", help="animate the transition between two panels of a run folder (MP4 and GIF)")
    )
    _add_plan(
        commands.add_parser(
            "plan", help="predict the memory of each phase of a story, and the settings that fit a budget"
        )
    )
    add_evaluate(commands.add_parser("evaluate", help="score a run folder's consistency (CLIP-T, CLIP-I, ...)"))
    add_benchmark(
        commands.add_parser("benchmark", help="draw a prompt set under several settings, score it, compare them")
    )
    return parser


def _devices(text: str) -> str:
    from .launcher import devices_value

    try:
        devices_value(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _size(text: str) -> int:
    from .memory_plan import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_plan(plan: argparse.ArgumentParser) -> None:
    plan.add_argument("story", help="story file (.yaml/.json) or a story.json written by an earlier run")
    plan.add_argument("--model", help="as for generate; only its configs are read, no weights")
    for name in ("steps", "height", "width", "id_images", "window", "first_consistent_step"):
        plan.add_argument("--" + name.replace("_", "-"), type=whole_value, help=_allowed(name, "as for generate"))
    plan.add_argument("--guidance", type=decimal_value, help=_allowed("guidance", "as for generate"))
    plan.add_argument("--sampling-rate", type=_rate, help=_allowed("sampling_rate", "as for generate"))
    plan.add_argument(
        "--mode", choices=list(CONSISTENCY_MODES), help="identity bank (default), sliding window, or off (no sharing)"
    )
    plan.add_argument("--scheduler", help="as for generate: it decides the steps the bank holds")
    plan.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda", help="where the run will draw (default cuda)"
    )
    plan.add_argument(
        "--dtype", default="auto", help="auto (float16 on cuda, float32 on cpu), float16, bfloat16 or float32"
    )
    plan.add_argument("--cpu-offload", action="store_true", help="predict with diffusers model CPU offload")
    plan.add_argument("--vae-slicing", action="store_true")
    plan.add_argument("--vae-tiling", action="store_true", help="(implies --vae-slicing in the prediction)")
    plan.add_argument("--bank-on-device", action="store_true", help="predict with the identity bank in GPU memory")
    plan.add_argument("--low-vram", action="store_true", help="predict with generate's --low-vram preset")
    plan.add_argument("--control-union", action="store_true", help="predict with generate's --control-union")
    plan.add_argument(
        "--vram", type=_size, help="device memory budget, e.g. 12GB or 12GiB: print the settings that fit"
    )
    plan.add_argument("--ram", type=_size, help="host memory budget, e.g. 32GB: print the settings that fit")
    plan.set_defaults(
        seed=None,
        style=None,
        negative_prompt=None,
        no_consistency=False,
        consistency=None,
        reference_adapter=None,
        face_model=None,
        subject_threshold=None,
    )


def _add_generate(generate: argparse.ArgumentParser) -> None:
    generate.add_argument(
        "story",
        nargs="+",
        help="story file (.yaml/.json) or a story.json written by an earlier run; several with --out-root",
    )
    generate.add_argument("--out", type=folder_value, help="output folder (panels/, story.json)")
    generate.add_argument(
        "--out-root",
        type=folder_value,
        help="with several stories: a folder holding one run folder per story, named after its file",
    )
    generate.add_argument(
        "--model",
        help="registry name (configs/models.yaml), hub id, local folder, .safetensors file, or tiny-sdxl / tiny-sd15",
    )
    generate.add_argument("--steps", type=whole_value, help=_allowed("steps", "denoising steps (default: the model's)"))
    generate.add_argument(
        "--guidance", type=decimal_value, help=_allowed("guidance", "guidance scale (default: the model's)")
    )
    generate.add_argument("--seed", type=whole_value, help=_allowed("seed", "story seed (default 0)"))
    generate.add_argument("--height", type=whole_value, help=_allowed("height", "pixels (default: the model's)"))
    generate.add_argument("--width", type=whole_value, help=_allowed("width", "pixels (default: the model's)"))
    generate.add_argument(
        "--sampling-rate",
        type=_rate,
        help=_allowed("sampling_rate", "share of other images' tokens each image attends to (default 0.5)"),
    )
    generate.add_argument(
        "--id-images",
        type=whole_value,
        help=_allowed("id_images", "panels per character in its identity set (default 3)"),
    )
    generate.add_argument(
        "--window", type=whole_value, help=_allowed("window", "panels per batch / sliding window length (default 4)")
    )
    generate.add_argument(
        "--mode",
        choices=list(CONSISTENCY_MODES),
        help="identity bank (default), sliding window, or off (each panel drawn alone, as plain SDXL would)",
    )
    generate.add_argument(
        "--consistency",
        choices=["uniform", "subject"],
        help="share every token (uniform, the default) or only the tokens that show the characters (subject)",
    )
    generate.add_argument(
        "--reference-adapter",
        choices=["image", "face"],
        help="how reference photos steer their characters: the whole photo (image, the default) or its face's "
        "identity (face: IP-Adapter FaceID, needs --face-model)",
    )
    generate.add_argument(
        "--face-model",
        help="folder of an InsightFace model pack (.../models/buffalo_l) for --reference-adapter face",
    )
    generate.add_argument(
        "--subject-threshold",
        type=decimal_value,
        help=_allowed("subject_threshold", "where a subject mask starts, on its 0..1 map (default: Otsu's, per map)"),
    )
    generate.add_argument(
        "--devices",
        type=_devices,
        help="draw the story over several processes: GPU numbers such as 0,1,2,3 (one process each) or cpu:N; "
        "the same panels as one process (docs/distributed.md)",
    )
    generate.add_argument(
        "--save-masks", action="store_true", help="write each panel's subject masks to masks/ (one image per character)"
    )
    generate.add_argument(
        "--first-consistent-step",
        type=whole_value,
        help=_allowed("first_consistent_step", "plain attention before this step (default 2)"),
    )
    generate.add_argument("--style", help="style preset from configs/styles.yaml")
    generate.add_argument("--negative-prompt")
    generate.add_argument("--scheduler", help="euler, euler-a, ddim, dpm++, dpm++-karras, unipc")
    generate.add_argument("--no-consistency", action="store_true", help="plain diffusion, no consistent attention")
    generate.add_argument(
        "--panels", type=_panel_list, help="only these 1-based panels, e.g. 2,5 (with --bank: keep the characters)"
    )
    generate.add_argument("--bank", help="identity bank (.safetensors) from an earlier run, for --panels")
    generate.add_argument("--save-bank", action="store_true", help="also write identity_bank.safetensors")
    generate.add_argument("--overwrite", action="store_true", help="replace the outputs already in --out")
    generate.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    generate.add_argument("--dtype", default="auto", help="auto, float16, bfloat16 or float32")
    generate.add_argument(
        "--bank-on-device", action="store_true", help="keep the identity bank in GPU memory (faster, more memory)"
    )
    generate.add_argument(
        "--bank-memory",
        type=_size,
        help="host memory for the identity bank, e.g. 4GB: past it the bank spills to disk (default: no limit)",
    )
    generate.add_argument(
        "--bank-prefetch",
        action="store_true",
        help="on a GPU, copy the host identity bank a step ahead on a side CUDA stream (see docs/memory.md)",
    )
    generate.add_argument("--cpu-offload", action="store_true", help="diffusers model CPU offload (less GPU memory)")
    generate.add_argument("--vae-slicing", action="store_true")
    generate.add_argument("--vae-tiling", action="store_true")
    generate.add_argument(
        "--low-vram",
        action="store_true",
        help="low-memory preset: model CPU offload (CUDA), VAE slicing and tiling, the identity bank in host memory, "
        "and for SDXL in float16 the fp16-safe VAE madebyollin/sdxl-vae-fp16-fix (kept off when it cannot be loaded)",
    )
    generate.add_argument(
        "--control-union",
        action="store_true",
        help="SDXL: draw panels' control maps with the union ControlNet (one model for every kind; configs/adapters.yaml)",
    )
    generate.add_argument("--lora", help="LoRA weights (hub id or file) loaded with diffusers' load_lora_weights")
    generate.add_argument("--lora-scale", type=decimal_value, default=1.0, help=_allowed("lora_scale", "(default 1)"))
    generate.add_argument("--quiet", action="store_true", help="no progress bar")
    generate.add_argument(
        "--layout", help="also compose comic pages with this template of layouts/ (default: panels only)"
    )
    generate.add_argument(
        "--export", help="also write pdf, cbz and/or zip, e.g. pdf,cbz (pages in --layout, else classic)"
    )
    generate.add_argument(
        "--direction",
        choices=["ltr", "rtl"],
        help="pages read left to right or right to left (as compose --direction; default: the layout's)",
    )


def _add_compose(compose: argparse.ArgumentParser) -> None:
    compose.add_argument("run_dir", type=folder_value, help="a folder written by generate (story.json, panels/)")
    compose.add_argument(
        "--layout", default="classic", help="template name from layouts/ or a template file (default classic)"
    )
    compose.add_argument("--export", default="png", help="png (always), pdf, cbz, zip; comma-separated, e.g. pdf,cbz")
    compose.add_argument("--no-title", action="store_true", help="no title band on the first page")
    compose.add_argument(
        "--no-lettering", action="store_true", help="pictures only: no captions, speech bubbles or title"
    )
    compose.add_argument(
        "--fit",
        choices=["crop", "letterbox"],
        help="fill each cell (crop, the default) or show whole panels (letterbox)",
    )
    compose.add_argument(
        "--direction",
        choices=["ltr", "rtl"],
        help="read the pages left to right or right to left (rtl: panels and captions start on the right, as in "
        "manga and Hebrew or Arabic comics); default: the layout's",
    )
    compose.add_argument("--dpi", type=whole_value, help="page resolution (default: the template's, usually 150)")


def _add_animate(animate: argparse.ArgumentParser) -> None:
    animate.add_argument("run_dir", type=folder_value, help="a folder written by generate (story.json, panels/)")
    animate.add_argument(
        "--from", dest="start", type=whole_value, required=True, help="1-based number of the first panel"
    )
    animate.add_argument("--to", dest="end", type=whole_value, required=True, help="1-based number of the last panel")
    animate.add_argument(
        "--frames",
        type=whole_value,
        default=DEFAULT_FRAMES,
        help=_allowed("frames", f"frames including both panels (default {DEFAULT_FRAMES})"),
    )
    animate.add_argument(
        "--fps",
        type=decimal_value,
        default=DEFAULT_FPS,
        help=_allowed("fps", f"frames per second of the MP4 and GIF (default {DEFAULT_FPS:g})"),
    )
    animate.add_argument(
        "--model",
        default="default",
        help="default (SD 1.5 + AnimateDiff + IP-Adapter Plus), tiny (offline, random weights), or an SD 1.5 hub id / folder",
    )
    animate.add_argument(
        "--predictor",
        help="folder of a trained semantic motion predictor (config.json + model.safetensors); without it, linear interpolation",
    )
    animate.add_argument("--prompt", help="text for the clip (default: the two panels' prompts)")
    animate.add_argument("--negative-prompt")
    animate.add_argument("--seed", type=whole_value, default=0, help=_allowed("seed"))
    animate.add_argument(
        "--steps", type=whole_value, help=_allowed("animation_steps", "denoising steps (default 25; tiny: 4)")
    )
    animate.add_argument("--guidance", type=decimal_value, default=7.5, help=_allowed("guidance"))
    animate.add_argument(
        "--strength",
        type=decimal_value,
        default=0.9,
        help=_allowed("strength", "noise on the in-between frames: 1 = most motion, lower = closer to a cross-fade"),
    )
    animate.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    animate.add_argument("--dtype", default="auto", help="auto, float16, bfloat16 or float32")
    animate.add_argument("--quiet", action="store_true", help="no progress bar")
