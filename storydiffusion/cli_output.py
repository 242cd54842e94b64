"""What the command line shows around model work: a tqdm bar over the denoising steps, the libraries' own
logging quieted while models load, and the lines that report a finished run or composition."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import counted
from .run_manifest import manifest_panels


@contextmanager
def quiet_model_libraries() -> Iterator[None]:
    """While models load, the hub, diffusers and transformers log only errors: their warnings (a model
    not found offline, a config key ignored, a deprecated argument diffusers passes the hub) would bury the
    one line the CLI prints for a bad input.
    The levels are put back afterwards, as the CLI may run inside another program."""
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as transformers_logging

    libraries = (diffusers_logging, hub_logging, transformers_logging)
    levels = [library.get_verbosity() for library in libraries]
    for library in libraries:
        library.set_verbosity_error()
    try:
        with warnings.catch_warnings():  # diffusers passes the hub an argument it deprecated: noise, not news
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*", category=UserWarning)
            yield
    finally:
        for library, level in zip(libraries, levels):
            library.set_verbosity(level)


class _LazyBar:
    """A tqdm bar that appears with the first step, so a refusal before any work (a device that is not
    there, a model that fails to load) is one line, not an empty bar and then the line."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None

    def _shown(self, total: int):
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", disable=self.quiet, file=sys.stderr)
        return self.bar

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        if self.bar is not None:
            self.bar.close()


class StepBar(_LazyBar):
    """A tqdm bar over every denoising step of a story run, naming the panels being drawn."""

    def update(self, progress) -> None:
        bar = self._shown(progress.batches * progress.steps)
        bar.n = progress.batch * progress.steps + progress.step
        bar.set_postfix_str(progress.drawing())
        bar.refresh()


class TransitionBar(_LazyBar):
    """A tqdm bar over the denoising steps of a transition clip."""

    def update(self, progress) -> None:
        bar = self._shown(progress.steps)
        bar.n = progress.step
        bar.refresh()


def report_generation(result, out, manifest) -> None:
    """The run's warnings, then what the folder holds: a continued run or a redraw says how many it drew."""
    from .run_manifest import read_manifest

    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    count, held = len(result.panels), len(manifest_panels(read_manifest(manifest)))
    if held == count:
        print(f"{counted(count, 'panel')} in {out / 'panels'}; manifest {manifest}")
    else:
        total = len(result.story.panels)
        print(f"{counted(count, 'panel')} drawn; {held} of {total} panels in {out / 'panels'}; manifest {manifest}")
    if result.bank is not None and len(result.bank):
        images = counted(len(result.bank.sources()), "identity image")
        print(f"identity bank: {result.bank.nbytes() / 2**20:.1f} MiB for {images}")


def report_compose(result) -> None:
    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    extra = "".join(f", {path}" for kind, path in result.files.items() if kind != "pages")
    count = len(result.pages)
    print(f"{counted(count, result.template + ' page')} in {result.run_dir / 'pages'}{extra} ({result.seconds:.1f} s)")
