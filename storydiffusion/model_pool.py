"""The studio's loaded models: shared by every user, chosen from the operator's list, each loaded once.

On a shared server (Spaces, a share link, ``--host 0.0.0.0``) a user picks a model by name from the
registry only; hub ids and server paths are accepted only when the operator allows custom models.
A refused name is refused by its spelling alone, before the file system or the hub is asked, so the
answer never tells whether a server path exists. What the pool says about a model (its notice) is a
function of that model's name only, never of another user's earlier request.

With several devices (``python app.py --devices 0,1``) each run leases one (``lease``): up to one run
per device at a time, each on its own copy of the model, so several users draw at once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .errors import ModelError, StoryDiffusionError, shown
from .hub import hub_is_reachable, hub_repo, is_in_hub_cache
from .models import LOW_VRAM, load_model_registry
from .pipeline import StoryPipeline
from .settings import SETTING_RANGES, GenerationSettings
from .story import Story
from .work_limits import WorkLimits

OFFLINE_MODEL = "tiny-sdxl"
MAX_MODEL_NAME_CHARS = 500
MAX_NOTICES = 64  # names that could not be loaded, remembered with the reason

logger = logging.getLogger(__name__)


class HubUnreachable(ModelError):
    """A hub model is neither cached nor downloadable right now: loading it is not even tried."""


class ModelNotOffered(StoryDiffusionError, ValueError):
    """A user asked for a model that this server does not offer."""


class ModelPool:
    """Loaded StoryPipelines by model name, shared by every session; at most ``max_loaded`` stay loaded.

    When the requested model cannot be loaded (no network, no weights) and ``fallback`` is on, the
    offline demo model is used instead and :meth:`notice` says so in one line. Without network a hub
    model is loaded from the cache only, and one that is not cached is not tried at all, so the app
    starts at once instead of waiting on the hub's retries. ``low_vram`` (the operator's choice: memory
    on a shared server is not a user's to spend) loads every model with the low-memory preset; ``limits``
    (the operator's too) bounds the drawing one request may ask for (``check_work``).
    """

    def __init__(
        self,
        default_model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        fallback: bool = True,
        allow_custom: bool = False,
        max_loaded: int = 2,
        low_vram: bool = False,
        loader: Callable[..., StoryPipeline] = StoryPipeline.from_pretrained,
        hub_online: Callable[[], bool] = hub_is_reachable,
        in_cache: Callable[[str], bool] = is_in_hub_cache,
        devices: Sequence[str] | None = None,
        face_model: str | None = None,
        limits: WorkLimits | None = None,
    ):
        self.default_model = default_model
        self.device, self.dtype, self.fallback = device, dtype, fallback
        self.devices = list(devices) if devices else [device]  # one run at a time on each ("cpu" may repeat)
        self._free: queue.Queue[int] = queue.Queue()  # the numbers of the devices no run is using
        for slot in range(len(self.devices)):
            self._free.put(slot)
        self.allow_custom, self.max_loaded = allow_custom, max(1, max_loaded) * len(self.devices)
        self.low_vram, self.face_model, self.limits = low_vram, face_model, limits
        self._loader = loader
        self._hub_online, self._in_cache = hub_online, in_cache
        self._online: bool | None = None
        self._pipelines: OrderedDict[tuple[str, int], StoryPipeline] = OrderedDict()  # by (name, device number)
        # By model name, why that name runs the offline demo (it could not be loaded): the most recent only.
        self._notices: OrderedDict[str, str] = OrderedDict()
        self._stand_ins: dict[int, StoryPipeline] = {}  # by device number: the demo model such names run
        self._transition = None
        self._lock = threading.Lock()

    def choices(self) -> list[str]:
        """The model names users may pick: the operator's default first, then the registry."""
        names = list(load_model_registry())
        if self.default_model not in names:
            names.insert(0, self.default_model)
        return names

    def offers(self, name: str) -> bool:
        """Whether users may draw with ``name`` here: listed, or any name where the operator allows it."""
        return name in self.choices() or self.allow_custom

    def check_choice(self, name: Any) -> str:
        """``name`` if users may load it here, else ModelNotOffered; decided by the name alone."""
        if name is None or name == "":
            return self.default_model
        if not isinstance(name, str):
            raise ModelNotOffered(f"Model: expected a model name (text), got {type(name).__name__}")
        if len(name) > MAX_MODEL_NAME_CHARS:
            raise ModelNotOffered(
                f"Model: a name of {len(name):,} characters is too long (at most {MAX_MODEL_NAME_CHARS}); "
                "choose a model from the list"
            )
        if self.offers(name):
            return name
        raise ModelNotOffered(
            f"Model: {shown(shown_name(name))} is not offered on this server; choose one of {', '.join(self.choices())}"
        )

    def check_work(self, settings: GenerationSettings, story: Story | None = None, *, redraw: bool = False) -> None:
        """WorkTooLarge when the request asks more than the operator's limits allow (none: anything the
        library's ranges do)."""
        if self.limits is not None:
            self.limits.check(settings, story, redraw=redraw)

    def highest(self, name: str) -> float:
        """The highest value the page's widget for setting ``name`` offers here."""
        return self.limits.highest(name) if self.limits is not None else SETTING_RANGES[name].high

    @property
    def concurrency(self) -> int:
        """How many runs may draw at once: one per device."""
        return len(self.devices)

    def get(self, name: str | None = None, slot: int = 0) -> StoryPipeline:
        """The pipeline for ``name`` (checked with :meth:`check_choice`) on device number ``slot`` (default:
        the first), loading it on first use: each device has its own copy."""
        name = self.check_choice(name)
        key = (name, slot)
        with self._lock:
            if key in self._pipelines:
                self._pipelines.move_to_end(key)
                return self._pipelines[key]
            if name in self._notices:  # it could not be loaded a moment ago: not tried again at every run
                return self._stand_in(slot)
            try:
                pipeline = self._load(name, self.devices[slot])
            except ModelError as error:
                if not self.fallback or name == OFFLINE_MODEL:
                    raise
                self._fell_back(name, error)
                return self._stand_in(slot)
            self._keep(key, pipeline)
            return pipeline

    @contextmanager
    def lease(self, name: str | None = None) -> Iterator[StoryPipeline]:
        """The pipeline for ``name`` on a device no other run is using, until the run ends (waits for one)."""
        name = self.check_choice(name)  # a refused name never waits for a device
        slot = self._free.get()
        try:
            yield self.get(name, slot)
        finally:
            self._free.put(slot)

    def notice(self, name: str | None = None) -> str:
        """One banner line when ``name`` runs a tiny random-weight model, then the low-memory preset's note
        when the operator turned it on; else empty."""
        return " ".join(part for part in (self._model_notice(name), self.memory_note()) if part)

    def _model_notice(self, name: str | None) -> str:
        """One banner line when ``name`` runs a tiny random-weight model, else empty."""
        name = name or self.default_model
        if name in self._notices:
            return self._notices[name]
        pipeline = self._pipelines.get((name, 0))
        if pipeline is not None and pipeline.spec.source == "tiny":
            return (
                f"Offline demo: {shown_name(name)!r} is a tiny random-weight model (panels are random patterns): "
                "choose a real model under Model, such as sdxl-base, for real pictures."
            )
        return ""

    def _keep(self, key: tuple[str, int], pipeline: StoryPipeline) -> None:
        self._pipelines[key] = pipeline
        while len(self._pipelines) > self.max_loaded:
            evicted, _ = self._pipelines.popitem(last=False)
            logger.info("Unloaded model %r to keep at most %d loaded", evicted, self.max_loaded)

    def _fell_back(self, name: str, error: ModelError) -> None:
        """Note why ``name`` runs the offline demo model; only the latest MAX_NOTICES names are kept, so names
        typed by users never grow the pool without end."""
        logger.warning("Could not load %r, using the offline demo model %r: %s", name, OFFLINE_MODEL, error)
        reason = (
            "no network, no cached weights"
            if isinstance(error, HubUnreachable)
            else "its weights could not be read here: the server's log says why"
        )
        self._notices[name] = (
            f"Offline demo: could not load {shown_name(name)!r} ({reason}); running the tiny random-weight "
            "offline demo model instead (panels are random patterns)."
        )
        while len(self._notices) > MAX_NOTICES:
            self._notices.popitem(last=False)

    def _stand_in(self, slot: int) -> StoryPipeline:
        """The offline demo model for a name that could not be loaded: the one loaded by its own name if it is,
        else one kept apart (it is tiny), so that a mistyped name never unloads a model users are drawing with."""
        loaded = self._pipelines.get((OFFLINE_MODEL, slot))
        if loaded is not None:
            return loaded
        if slot not in self._stand_ins:
            self._stand_ins[slot] = self._loader(OFFLINE_MODEL, device="cpu", dtype="float32")
        return self._stand_ins[slot]

    def _load(self, name: str, device: str) -> StoryPipeline:
        """Load from the hub when it answers, else from the cache only (and not at all when nothing is cached)."""
        repo = hub_repo(name)
        if repo is None or self._is_online():
            return self._loader(name, **self._placement(device))
        if self.fallback and not self._in_cache(repo):
            raise HubUnreachable(f"{name!r} ({repo}) is not in the Hugging Face cache and the hub cannot be reached")
        return self._loader(name, **self._placement(device), local_files_only=True)

    def _placement(self, device: str) -> dict[str, Any]:
        """The loader's device options; ``low_vram`` and ``face_model`` only when set, so loaders without those
        options still work."""
        options = {"device": device, "dtype": self.dtype, **({"low_vram": True} if self.low_vram else {})}
        return {**options, **({"face_model": self.face_model} if self.face_model else {})}

    def memory_note(self) -> str:
        """One line for the studio's settings note when the operator turned on the low-memory preset, else empty."""
        if not self.low_vram:
            return ""
        return f"Low-memory preset (--low-vram): {LOW_VRAM.describe()}. Slower, for a small GPU."

    def _is_online(self) -> bool:
        if self._online is None:
            self._online = self._hub_online()
        return self._online

    def transition(self, predictor: str | None = None):
        """The video pipeline for the Animate tab, loaded on first use: tiny when the story model is."""
        from .motion.animate import load_transition_pipeline

        offline = self.get().spec.source == "tiny"
        with self._lock:
            if self._transition is None:
                try:
                    self._transition = load_transition_pipeline(
                        "tiny" if offline else "default", predictor, device=self.device, dtype=self.dtype
                    )
                except ModelError:
                    if not self.fallback:
                        raise
                    self._transition = load_transition_pipeline("tiny", predictor)
            return self._transition


def shown_name(name: str) -> str:
    """A model name as a page may show it: a file or folder path is cut to its last part."""
    from pathlib import PurePath

    if "/" in name or "\\" in name:
        parts = PurePath(name.replace("\\", "/")).parts
        looks_like_hub_id = len(parts) == 2 and not name.startswith(("/", "~", ".")) and ":" not in name
        if not looks_like_hub_id:
            return parts[-1] if parts else name
    return name
