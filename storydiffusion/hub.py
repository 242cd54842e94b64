"""Whether a model can come from the Hugging Face hub or its cache, asked quickly.

Loading a hub model without network makes the hub client retry for a while before it gives up;
these checks let the studio decide at once to load from the cache only, or not to try at all.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path

from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.utils import HFValidationError, validate_repo_id

from .models import ModelSpec, load_model_registry

HUB_PROBE_SECONDS = 3.0


def hub_repo(name: str, registry: dict[str, ModelSpec] | None = None) -> str | None:
    """The Hugging Face repository ``name`` loads from, or None for tiny models and local files or folders."""
    spec = (registry if registry is not None else load_model_registry()).get(name)
    source = spec.source if spec is not None else name
    if source == "tiny" or "/" not in source or Path(source).expanduser().exists():
        return None
    try:
        validate_repo_id(source)
    except HFValidationError:
        return None
    return source


def hub_is_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether the Hugging Face hub answers within ``timeout`` seconds (any HTTP answer counts).

    The probe runs in a thread so that a name lookup that hangs cannot hold up the start of the app.
    """
    if hf_constants.HF_HUB_OFFLINE:
        return False
    answered = threading.Event()

    def probe() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(hf_constants.ENDPOINT, method="HEAD"), timeout=timeout):
                answered.set()
        except urllib.error.HTTPError:  # an error status is still an answer
            answered.set()
        except (OSError, ValueError):
            pass

    threading.Thread(target=probe, name="storydiffusion-hub-probe", daemon=True).start()
    return answered.wait(timeout)


def is_in_hub_cache(repo: str) -> bool:
    """Whether the local Hugging Face cache holds a pipeline of ``repo`` (its model_index.json)."""
    return isinstance(try_to_load_from_cache(repo, "model_index.json"), str)
