"""``storydiffusion benchmark``: a prompt set drawn under each variant of the settings, scored, compared.

Every story is drawn once per variant, with the same seeds, into ``OUT/runs/VARIANT/STORY/`` (an
ordinary run folder with its ``metrics.json``), then ``OUT/results.md`` and ``OUT/results.csv`` compare
the variants (``comparison.py``). ``OUT/benchmark.json`` records each finished run, so an interrupted
benchmark continues where it stopped, and marks the folder as this tool's: a folder holding anything
else is refused before anything is drawn, and a run folder holding a user's file is never cleared.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes, write_json
from ..errors import SettingsError, StoryDiffusionError
from ..images import read_image
from ..resume import earlier_run, is_incomplete, unfinished_panels
from ..run_inputs import drawing_story, input_digests
from ..run_records import file_digest, read_record, refuse_unreadable_records
from ..rundir import check_output_path, remove_written_files, save_result, unrecorded_files
from ..settings import GenerationSettings
from .comparison import Comparison, compare, comparison_csv, comparison_markdown
from .encoders import ImageEmbedder, StoryEncoder
from .prompt_sets import BenchmarkStory
from .run_metrics import evaluate_run, write_metrics
from .story_metrics import StoryScores
from .variant_names import DEFAULT_VARIANTS, NAMED_VARIANTS, VARIED_SETTINGS

BENCHMARK_FORMAT = "storydiffusion-benchmark/1"
RECORD_NAME = "benchmark.json"
RUNS_DIR = "runs"
RESULT_FILES = ("results.md", "results.csv")
_VARY = re.compile(r"(?P<key>[a-z_]+)=(?P<values>[^=]+)")
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.+-]{1,32}")  # it names a folder too


@dataclass
class Variant:
    name: str
    overrides: dict[str, Any]


def variants_from(names: Sequence[str] = DEFAULT_VARIANTS, vary: Sequence[str] = ()) -> list[Variant]:
    """Named variants (``NAMED_VARIANTS``), then one per value of each ``key=v1,v2`` in ``vary``."""
    variants = []
    for name in names:
        if name not in NAMED_VARIANTS:
            raise SettingsError(f"--variants: {name!r} is not a variant: use {', '.join(NAMED_VARIANTS)}")
        variants.append(Variant(name, dict(NAMED_VARIANTS[name])))
    for text in vary:
        match = _VARY.fullmatch(text.strip())
        if match is None or match["key"] not in VARIED_SETTINGS:
            raise SettingsError(
                f"--vary {text!r}: write a setting and its values, e.g. sampling_rate=0.3,0.7; "
                f"settings: {', '.join(VARIED_SETTINGS)}"
            )
        for value in match["values"].split(","):
            if not _SAFE_VALUE.fullmatch(value.strip()):
                raise SettingsError(f"--vary {text!r}: {value.strip()!r} is not a number or a word")
            variant = Variant(f"{match['key']}={value.strip()}", {match["key"]: _setting_value(value.strip())})
            try:
                GenerationSettings.from_dict(variant.overrides)  # checked now, before any model loads
            except SettingsError as error:
                raise SettingsError(f"--vary {text.strip()!r}: {error}") from None
            variants.append(variant)
    if not variants:
        raise SettingsError("--variants: name at least one variant, or give --vary")
    if len({v.name for v in variants}) != len(variants):
        raise SettingsError("--variants/--vary: a variant is named twice")
    return variants


def _setting_value(text: str) -> int | float | str:
    """A --vary value as the setting takes it: a whole number, a number, or the word itself (``off``)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def variant_settings(item: BenchmarkStory, variant: Variant, overrides: dict[str, Any]) -> GenerationSettings:
    """The story's settings, then the benchmark's (steps, size, seed), then the variant's."""
    data = {**item.story.settings.to_dict(), **overrides, **variant.overrides}
    if "consistency" in variant.overrides and data.get("mode") == "off":  # a story drawn without: the variant's on
        data["mode"] = "identity"
    return GenerationSettings.from_dict(data, where=f"variant {variant.name}, story {item.name}")


def run_key(item: BenchmarkStory, settings: GenerationSettings, pipeline: Any) -> str:
    """What decides a run's pixels (story, settings, model, dtype, device): a finished run with the same
    key is not drawn again."""
    model = [pipeline.spec.name, str(pipeline.pipe.unet.dtype), pipeline.device.type]
    story = drawing_story(item.story, input_digests(item.story))  # a photo edited in place is another drawing
    text = json.dumps([story, settings.to_dict(), model], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _finished(run_dir: Path, panels: int) -> bool:
    """Whether ``run_dir`` holds a finished run with every panel's file in place (one deleted by hand, or a
    run stopped half-way, is drawn again: its scores would be of fewer panels)."""
    manifest = earlier_run(run_dir)
    return manifest is not None and not is_incomplete(manifest) and not unfinished_panels(manifest, run_dir, panels)


def prepare_benchmark_dir(out: str | Path) -> dict[str, Any]:
    """The folder's record (empty for a new folder); a folder that is not a benchmark's is refused."""
    folder = Path(out)
    check_output_path(folder)  # a name too long, a file on its path, a place nobody may write
    if folder.exists() and not folder.is_dir():
        raise StoryDiffusionError(f"--out {out} is a file: name a new or empty folder")
    record = read_record(folder / RECORD_NAME) if folder.is_dir() else None
    if record is not None and record.get("format") == BENCHMARK_FORMAT:
        runs = record.get("runs")
        if not isinstance(runs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in runs.items()):
            raise StoryDiffusionError(
                f"{folder / RECORD_NAME}: 'runs' must map each run to its key; it was edited: restore it, or name "
                "a new --out folder (nothing was changed)"
            )
        return record
    if (folder / RECORD_NAME).exists():  # the record itself damaged: removing it would leave a folder not ours
        raise StoryDiffusionError(
            f"{folder / RECORD_NAME} is not a benchmark record this tool can read (damaged or edited): restore it, "
            "or name a new --out folder (nothing was changed)"
        )
    if folder.is_dir() and any(folder.iterdir()):
        raise StoryDiffusionError(
            f"--out {out} holds files that are not a benchmark's: name a new or empty folder (nothing was changed)"
        )
    return {"format": BENCHMARK_FORMAT, "runs": {}}


@dataclass
class PlannedRun:
    variant: Variant
    item: BenchmarkStory
    settings: GenerationSettings

    @property
    def name(self) -> str:
        return f"{self.variant.name}/{self.item.name}"


def plan_benchmark(
    stories: Sequence[BenchmarkStory],
    variants: Sequence[Variant],
    out: str | Path,
    overrides: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[PlannedRun]]:
    """Everything checked before a model loads: the folder and its record, every variant's settings for
    every story, every reference picture, and no file of the user's in any run folder."""
    folder = Path(out)
    record = prepare_benchmark_dir(folder)
    planned = [PlannedRun(v, item, variant_settings(item, v, overrides or {})) for v in variants for item in stories]
    for item in stories:
        for person, path in item.references.items():
            read_image(path, f"{item.name}: {person}'s reference picture {path.name}")
    _check_result_files(folder, record)
    for run in planned:
        run_dir = folder / RUNS_DIR / run.variant.name / run.item.name
        refuse_unreadable_records(run_dir, fix=f"delete {run_dir.relative_to(folder)} to draw that run again")
        foreign = unrecorded_files(run_dir) if run_dir.is_dir() else []
        if foreign or (run_dir.exists() and not run_dir.is_dir()):
            where = foreign[0].relative_to(folder) if foreign else run_dir.relative_to(folder)
            raise StoryDiffusionError(
                f"{where} in --out was not written by this tool: move it, then run the benchmark again "
                "(nothing was changed)"
            )
    return record, planned


def run_benchmark(
    stories: Sequence[BenchmarkStory],
    variants: Sequence[Variant],
    pipeline: Any,
    out: str | Path,
    encoder: StoryEncoder,
    *,
    overrides: dict[str, Any] | None = None,
    dreamsim: ImageEmbedder | None = None,
    faces: Any | None = None,
    image_encoder: ImageEmbedder | None = None,
    on_run: Callable[[str, bool], None] | None = None,
) -> Comparison:
    """Draw (or reuse) every story under every variant, score each run, write the comparison.

    ``on_run(name, drawn)`` is told of each run as it finishes. Returns the comparison.
    """
    folder = Path(out)
    record, planned = plan_benchmark(stories, variants, folder, overrides)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / RECORD_NAME, record)
    by_variant: dict[str, list[StoryScores]] = {variant.name: [] for variant in variants}
    for run in planned:
        run_dir = folder / RUNS_DIR / run.variant.name / run.item.name
        key = run_key(run.item, run.settings, pipeline)
        drawn = record["runs"].get(run.name) != key or not _finished(run_dir, len(run.item.story.panels))
        if drawn:
            record["runs"].pop(run.name, None)  # the record never names a run that is not (yet) what it says
            write_json(folder / RECORD_NAME, record)
            _clear_run(run_dir)
            save_result(pipeline.generate(run.item.story, run.settings, keep_masks=True), run_dir)
        references = {person: read_image(path) for person, path in run.item.references.items()}
        scores = evaluate_run(
            run_dir,
            encoder,
            dreamsim=dreamsim,
            faces=faces,
            references=references or None,
            text_prefix=run.item.text_prefix,
            image_encoder=image_encoder,
        )
        write_metrics(run_dir, scores)
        by_variant[run.variant.name].append(scores)
        record["runs"][run.name] = key
        write_json(folder / RECORD_NAME, record)
        if on_run is not None:
            on_run(run.name, drawn)
    comparison = compare(by_variant)
    encoders = encoder.name if image_encoder is None else f"{encoder.name} (CLIP-T), {image_encoder.name} (CLIP-I)"
    heading = f"# Benchmark: {len(stories)} stories, {len(variants)} variants, {pipeline.spec.name}, {encoders}"
    results = {
        RESULT_FILES[0]: comparison_markdown(comparison, heading).encode(),
        RESULT_FILES[1]: comparison_csv(comparison).encode(),
    }
    record["results"] = list(RESULT_FILES)
    record["results_sha256"] = {name: hashlib.sha256(data).hexdigest() for name, data in results.items()}
    write_json(folder / RECORD_NAME, record)  # on record before written: a copy is never unrecorded
    for name, data in results.items():
        atomic_write_bytes(folder / name, data)
    return comparison


def _check_result_files(folder: Path, record: dict[str, Any]) -> None:
    """``results.md`` and ``results.csv`` are replaced only as this tool wrote them: one the user edited (its
    bytes are not those the record keeps), or a file or folder of theirs of that name, stops the benchmark
    before any model loads."""
    digests = record.get("results_sha256") if isinstance(record.get("results_sha256"), dict) else {}
    ours = record.get("results") if isinstance(record.get("results"), list) else []
    for name in RESULT_FILES:
        path = folder / name
        if not path.exists() and not path.is_symlink():
            continue
        if path.is_symlink() or not path.is_file() or name not in ours:
            why = "was not written by this tool"
        elif name in digests and file_digest(path) != digests[name]:
            why = "was edited since the benchmark wrote it"
        else:
            continue  # this tool's, as it wrote it (or written before records kept digests)
        raise StoryDiffusionError(
            f"{path} {why}: move it to keep it, then run the benchmark again (nothing was changed)"
        )


def _clear_run(run_dir: Path) -> None:
    """An unfinished or outdated run of ours goes; a user's file in it stops the benchmark."""
    if not run_dir.exists():
        return
    foreign = unrecorded_files(run_dir)
    if foreign:
        raise StoryDiffusionError(
            f"{run_dir} holds {foreign[0].name}, which this tool did not write: move it, then run the benchmark again"
        )
    remove_written_files(run_dir)
