"""The names of a run folder's files and their record formats: the one place that knows them (read by
:mod:`storydiffusion.rundir`, which writes the folder, and :mod:`storydiffusion.run_records`, which reads
what this tool wrote there)."""

from __future__ import annotations

import re

from .atomic import TEMPORARY_MARK

MANIFEST_FORMAT = "storydiffusion-run/1"
MANIFEST_NAME = "story.json"
BANK_NAME = "identity_bank.safetensors"
PANELS_DIR = "panels"
MASKS_DIR = "masks"  # --save-masks: each panel's subject masks, one picture per character
INPUTS_DIR = "inputs"  # the run's copies of the reference photos and control images its story names
PAGES_DIR = "pages"
PDF_NAME = "comic.pdf"
CBZ_NAME = "comic.cbz"
ZIP_NAME = "panels.zip"
EXPORT_FILES = (PDF_NAME, CBZ_NAME, ZIP_NAME)
VIDEO_DIR = "video"
PAGES_INDEX = "pages.json"
PAGES_FORMAT = "storydiffusion-pages/1"
METRICS_NAME = "metrics.json"  # `storydiffusion evaluate`: the run's scores
METRICS_FORMAT = "storydiffusion-metrics/1"
STAGING_DIR = ".storydiffusion-staging"  # an --overwrite run is drawn here, then replaces the old one
MAX_NAME_BYTES = 255  # the longest file name ext4, APFS and NTFS accept
MAX_MANIFEST_BYTES = 64 * 2**20  # a story.json of 10,000 panels is about 10 MB


_TEMPORARY = re.compile(rf"\.(?P<stem>.+){re.escape(TEMPORARY_MARK)}(?P<suffix>\.[^.]+)?")
# The shapes of the names this tool gives files under a run folder; a record naming anything else
# (a hand-edited story.json, pages.json or clip record) is not believed.
_OWN_NAME_SHAPES = (
    re.compile(rf"{PANELS_DIR}/panel_\d{{3,}}\.png"),
    re.compile(rf"{MASKS_DIR}/panel_\d{{3,}}_mask_\d{{1,2}}\.png"),
    re.compile(rf"{PAGES_DIR}/page_\d{{2,}}\.png"),
    re.compile(rf"{VIDEO_DIR}/\d{{2,}}-\d{{2,}}\.(mp4|gif|json)"),
    re.compile(rf"{INPUTS_DIR}/[0-9a-f]{{16}}(\.[a-z0-9]{{1,5}})?"),
)


MAX_PANEL_NUMBER = 99_999  # beyond any story's max_panels; keeps a hand-edited number from naming absurd files


def panel_filename(index: int) -> str:
    """``panel_001.png`` for the first panel: 1-based, 3 digits."""
    return f"panel_{index + 1:03d}.png"


def mask_filename(index: int, number: int) -> str:
    """``panel_001_mask_2.png``: the mask of the second character shown in the first panel."""
    return f"panel_{index + 1:03d}_mask_{number + 1}.png"
