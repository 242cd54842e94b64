"""How the studio is served: who may load which models, how much may wait, how long files live.

A studio on the loopback interface is one person's tool; one reachable by others (``--share``,
``--host 0.0.0.0``, Hugging Face Spaces) is shared ground. The defaults follow from that: custom
models and server paths are allowed only on loopback unless the operator says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import SettingsError
from .model_pool import OFFLINE_MODEL
from .models import LOW_VRAM, default_model_name
from .project import ProjectLimits
from .work_limits import LIBRARY_LIMITS, SHARED_SERVER_LIMITS, WorkLimits

LOCAL_UPLOAD_MB = 2048  # a project with its identity bank is hundreds of MB to a few GB
SHARED_UPLOAD_MB = 512  # on a shared server: a project with one character's bank, not a disk's worth
SESSION_TTL_SECONDS = 6 * 3600  # a session's files live this long after its last action
CACHE_SWEEP_SECONDS = 3600  # how often Gradio's file cache is swept ...
CACHE_MAX_AGE_SECONDS = 24 * 3600  # ... for files older than this
SPACES_ENV = "SPACE_ID"  # set by Hugging Face Spaces
# ZeroGPU time asked per run: a fixed start plus a rate per image, denoising step and megapixel.
# The rate is an SDXL estimate for a ZeroGPU slice, to be replaced by a measured one (benchmarks/).
GPU_START_SECONDS = 20
GPU_SECONDS_PER_STEP_MEGAPIXEL = 0.15
GPU_SECONDS_RANGE = (30, 600)
MCP_MISSING_MESSAGE = "--mcp needs the MCP extra: pip install 'storydiffusion[mcp]'"


@dataclass(frozen=True)
class ServerOptions:
    """Everything ``python app.py`` decides before the page is built."""

    model: str
    device: str = "auto"
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    allow_custom_models: bool = False
    max_queue: int = 16
    max_upload_mb: int = 2048
    limits: WorkLimits | None = None  # how much drawing one request may ask (None: the library's ranges)
    mcp: bool = False
    low_vram: bool = False
    scores_encoder: str | None = None  # the CLIP the consistency table is computed with; None: no table
    devices: tuple[str, ...] = ()  # one run at a time on each (--devices 0,1): several users draw at once
    face_model: str | None = None  # InsightFace's pack, for photos that steer by their face (FaceID)

    @property
    def shared(self) -> bool:
        """Whether people other than the operator can reach the page."""
        return self.share or not is_loopback(self.host) or SPACES_ENV in os.environ

    def project_limits(self) -> ProjectLimits:
        """What an uploaded project may unpack to: its panels and bank are stored, not compressed, so
        twice the upload limit leaves room for any real project and none for a disk-filling one."""
        return ProjectLimits(max_total_bytes=2 * self.max_upload_mb * 2**20)

    def pool_options(self) -> dict[str, Any]:
        """Keyword arguments for ``ModelPool``: where models run and who may pick them."""
        return {
            "device": self.device,
            "allow_custom": self.allow_custom_models,
            "low_vram": self.low_vram,
            "devices": list(self.devices) or None,
            "face_model": self.face_model,
            "limits": self.limits,
        }

    def launch_options(self) -> dict:
        """Keyword arguments for ``gr.Blocks.launch``."""
        return {
            "server_name": self.host,
            "server_port": self.port,
            "share": self.share,
            "show_error": False,
            "max_file_size": f"{self.max_upload_mb}mb",
            **({"mcp_server": True} if self.mcp else {}),
        }


def is_loopback(host: str) -> bool:
    """True for 127.0.0.1, ::1 and localhost: addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mcp_installed() -> bool:
    """Whether the ``mcp`` package that Gradio's MCP server needs is importable."""
    return importlib.util.find_spec("mcp") is not None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="StoryDiffusion studio web app")
    parser.add_argument(
        "--model", help="registry name, hub id, local folder or .safetensors file (default: configs/models.yaml)"
    )
    parser.add_argument("--offline-demo", action="store_true", help=f"use the tiny offline model {OFFLINE_MODEL!r}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="create a public Gradio link")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--low-vram",
        action="store_true",
        help="load every model with the low-memory preset (as `storydiffusion generate --low-vram`): "
        f"{LOW_VRAM.describe()}; slower, for a small GPU",
    )
    parser.add_argument(
        "--allow-custom-models",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let users load hub ids and server paths, not only the listed models "
        "(default: on for 127.0.0.1 without --share, off for a shared server)",
    )
    parser.add_argument("--max-queue", type=int, default=16, help="GPU jobs that may wait; more are told to come back")
    parser.add_argument(
        "--max-upload-mb",
        type=int,
        help=f"largest file a user may upload (default: {LOCAL_UPLOAD_MB} on 127.0.0.1, {SHARED_UPLOAD_MB} on a shared server)",
    )
    for flag, what, shared in (
        ("--max-panels", "panels of a story", SHARED_SERVER_LIMITS.max_panels),
        ("--max-steps", "denoising steps per image", SHARED_SERVER_LIMITS.max_steps),
        ("--max-side", "pixels along a panel's side", SHARED_SERVER_LIMITS.max_side),
    ):
        parser.add_argument(
            flag, type=int, help=f"most {what} one request may ask (default: {shared} on a shared server)"
        )
    parser.add_argument(
        "--devices",
        help="serve several users at once, one run per device: GPU numbers such as 0,1,2,3, or cpu:N",
    )
    parser.add_argument(
        "--face-model",
        help="folder of an InsightFace model pack (.../models/buffalo_l): lets reference photos steer by their "
        "face (IP-Adapter FaceID), as `storydiffusion generate --face-model`",
    )
    parser.add_argument(
        "--scores-encoder",
        help="CLIP encoder for the consistency table beside the pages, as `storydiffusion evaluate --encoder`, "
        "or none (default: tiny for the offline demo; the default CLIP when its weights are in the hub cache)",
    )
    parser.add_argument(
        "--mcp",
        action="store_true",
        help="also serve the studio as an MCP server (tools: generate_story, compose_pages)",
    )
    return parser


def server_options(argv: list[str] | None = None) -> ServerOptions:
    """The options of ``python app.py ARGS``, with the defaults that depend on who can reach the page."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("max_queue", "max_upload_mb", "max_panels", "max_steps", "max_side"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.mcp and not mcp_installed():
        parser.error(MCP_MISSING_MESSAGE)
    if args.face_model:
        from .errors import ModelError
        from .faces import face_folder

        try:
            face_folder(args.face_model)
        except ModelError as error:
            parser.error(str(error))
    if args.model is not None and not args.offline_demo:  # a misspelt model, before the server starts
        _check_model(parser, args.model)
    devices = _device_list(parser, args.devices) if args.devices else ()
    options = ServerOptions(
        model=OFFLINE_MODEL if args.offline_demo else (args.model or default_model_name()),
        device="cpu" if args.offline_demo else args.device,
        host=args.host,
        port=args.port,
        share=args.share,
        max_queue=args.max_queue,
        mcp=args.mcp,
        low_vram=args.low_vram,
    )
    if options.mcp and options.shared:  # its tools answer with files by their path on this machine
        parser.error("--mcp serves assistants on this machine only: start it without --share, on --host 127.0.0.1")
    allow = args.allow_custom_models if args.allow_custom_models is not None else not options.shared
    upload_mb = args.max_upload_mb or (SHARED_UPLOAD_MB if options.shared else LOCAL_UPLOAD_MB)
    limits = _work_limits(parser, args, options.shared)
    from .studio_scores import default_scores_encoder

    scores = args.scores_encoder or default_scores_encoder(options.model, OFFLINE_MODEL)
    scores = None if scores == "none" else scores
    return dataclasses.replace(
        options,
        allow_custom_models=allow,
        scores_encoder=scores,
        devices=devices,
        face_model=args.face_model,
        max_upload_mb=upload_mb,
        limits=limits,
    )


def _work_limits(parser: argparse.ArgumentParser, args: argparse.Namespace, shared: bool) -> WorkLimits | None:
    """The operator's limits on one request: the flags given, the shared-server defaults for the rest on a
    shared server; none at all on the operator's own machine unless a flag asks for one."""
    given = {name: getattr(args, name) for name in ("max_panels", "max_steps", "max_side") if getattr(args, name)}
    if not given and not shared:
        return None
    try:
        return dataclasses.replace(SHARED_SERVER_LIMITS if shared else LIBRARY_LIMITS, **given)
    except SettingsError as error:  # "max_side must be a multiple of 8 ...", said by its flag
        parser.error(f"--{str(error).replace('max_', 'max-', 1)}")


def _check_model(parser: argparse.ArgumentParser, model: str) -> None:
    from .errors import ModelError
    from .models.registry import check_model_name, load_model_registry

    try:
        check_model_name(model, load_model_registry())
    except ModelError as error:
        parser.error(f"--model: {error}")


def _device_list(parser: argparse.ArgumentParser, text: str) -> tuple[str, ...]:
    """``--devices 0,1`` -> ("cuda:0", "cuda:1"); ``cpu:2`` -> ("cpu", "cpu"); anything else is a usage error."""
    from .launcher import devices_value

    try:
        count, visible = devices_value(text)
    except ValueError as error:
        parser.error(f"--devices: {error}")
    return tuple(f"cuda:{number}" for number in visible.split(",")) if visible else ("cpu",) * count


def gpu_seconds(images: int, steps: int, width: int, height: int) -> int:
    """The ZeroGPU duration to ask for ``images`` images of ``steps`` steps at ``width`` x ``height``."""
    work = images * steps * width * height / 1e6 * GPU_SECONDS_PER_STEP_MEGAPIXEL
    low, high = GPU_SECONDS_RANGE
    return int(min(high, max(low, GPU_START_SECONDS + work)))


def gpu_seconds_for(handler: Callable[..., Any]) -> Callable[..., int]:
    """A duration function for ``spaces.GPU(duration=...)``: called with the handler's own arguments,
    it reads the work from them (story lines or one panel or a clip's frames, steps, size)."""
    signature = inspect.signature(handler)

    def seconds(*args: Any, **kwargs: Any) -> int:
        values = signature.bind_partial(*args, **kwargs).arguments
        images = _number(values.get("frames"), 0) or max(1, len(str(values.get("story_text") or "").splitlines()))
        if "number" in values:  # one panel redrawn (with its identity images at most)
            images = 4
        steps = _number(values.get("steps"), 30)
        return gpu_seconds(images, steps, _number(values.get("width"), 1024), _number(values.get("height"), 1024))

    return seconds


def _number(value: Any, default: int) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else default
