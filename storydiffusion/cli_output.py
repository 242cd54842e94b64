"""What the command line shows around model work: a tqdm bar over the denoising steps, the libraries' own
logging quieted while models load, and the lines that report a finished run or composition."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import counted
from .run_manifest import manifest_panels


@contextmanager
def quiet_model_libraries() -> Iterator[None]:
    """While models load, the hub, diffusers and transformers log only errors: their warnings (a model
    not found offline, a config key ignored) would bury the one line the CLI prints for a bad input.
    The levels are put back afterwards, as the CLI may run inside another program."""
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as transformers_logging

    libraries = (diffusers_logging, hub_logging, transformers_logging)
    levels = [library.get_verbosity() for library in libraries]
    for library in libraries:
        library.set_verbosity_error()
    try:
        yield
    finally:
        for library, level in zip(libraries, levels):
            library.set_verbosity(level)


class StepBar:
    """A tqdm bar over every denoising step of a story run, naming the panels being drawn."""

    def __init__(self, quiet: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=None, unit="step", disable=quiet, file=sys.stderr)

    def update(self, progress) -> None:
        if self.bar.total is None:
            self.bar.total = progress.batches * progress.steps
        self.bar.n = progress.batch * progress.steps + progress.step
        shown = ",".join(str(i + 1) for i in progress.panels) or "reference portraits"
        self.bar.set_postfix_str(f"panels {shown}" + (" (identity set)" if progress.kind == "identity" else ""))
        self.bar.refresh()

    def __enter__(self) -> StepBar:
        return self

    def __exit__(self, *exc_info) -> None:
        self.bar.close()


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
        print(f"identity bank: {result.bank.nbytes() / 2**20:.1f} MiB for {len(result.bank.sources())} identity images")


def report_compose(result) -> None:
    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    extra = "".join(f", {path}" for kind, path in result.files.items() if kind != "pages")
    count = len(result.pages)
    print(f"{counted(count, result.template + ' page')} in {result.run_dir / 'pages'}{extra} ({result.seconds:.1f} s)")
