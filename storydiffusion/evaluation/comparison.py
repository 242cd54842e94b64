"""A benchmark's comparison table: each variant's mean of each metric with a 95% bootstrap interval.

A metric's units are its own: panels for CLIP-T, (story, character) pairs for the similarities between
panels. Panels of one story are not independent (one cast, one seed), so with two stories or more the
bootstrap resamples whole stories (a cluster bootstrap) and the mean is over the units they hold; with
one story it resamples the units. Intervals are percentiles of 2,000 resampled means from a seeded
generator, so the same scores always give the same table. One unit has a mean and no interval.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .story_metrics import StoryScores

BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95
PANEL_METRICS = ("clip_t", "clip_score")
CHARACTER_METRICS = ("clip_i", "clip_i_crop", "clip_i_reference", "dreamsim", "face")
METRIC_TITLES = {
    "clip_t": "CLIP-T",
    "clip_score": "CLIP-T x2.5",
    "clip_i": "CLIP-I",
    "clip_i_crop": "CLIP-I crop",
    "clip_i_reference": "CLIP-I photo",
    "dreamsim": "DreamSim",
    "face": "face",
}


@dataclass
class Estimate:
    mean: float
    low: float | None  # None for a single unit: no interval
    high: float | None
    count: int

    def shown(self) -> str:
        if self.low is None or self.high is None:
            return f"{self.mean:.4f} (n={self.count})"
        return f"{self.mean:.4f} [{self.low:.4f}, {self.high:.4f}] (n={self.count})"


Units = dict[tuple[int, Any], float]  # (story, panel or character) -> value


def bootstrap(units: Units, seed: int = 0) -> Estimate | None:
    """The mean over ``units`` and its 95% percentile bootstrap interval (stories resampled when there are
    two or more, else the units); None without units."""
    if not units:
        return None
    values = np.asarray(list(units.values()), dtype=np.float64)
    if values.size == 1:
        return Estimate(float(values[0]), None, None, 1)
    stories = sorted({story for story, _ in units})
    rng = np.random.default_rng(seed)
    if len(stories) >= 2:
        index = {story: position for position, story in enumerate(stories)}
        groups = np.asarray([index[story] for story, _ in units])
        sums = np.bincount(groups, weights=values, minlength=len(stories))
        counts = np.bincount(groups, minlength=len(stories)).astype(np.float64)
        drawn = rng.integers(0, len(stories), size=(BOOTSTRAP_SAMPLES, len(stories)))
        means = sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)
    else:
        means = values[rng.integers(0, values.size, size=(BOOTSTRAP_SAMPLES, values.size))].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Estimate(float(values.mean()), float(low), float(high), int(values.size))


def metric_values(scores: Sequence[StoryScores], metric: str) -> dict[tuple[int, Any], float]:
    """Every unit's value of ``metric`` over the stories of one variant, keyed by (story, panel or character)
    so that two variants' values of the same unit can be paired."""
    if metric in PANEL_METRICS:
        return {(s, panel.panel): getattr(panel, metric) for s, story in enumerate(scores) for panel in story.panels}
    return {
        (s, name): value
        for s, story in enumerate(scores)
        for name, c in story.characters.items()
        if (value := getattr(c, metric)) is not None
    }


def paired_differences(
    by_variant: dict[str, list[StoryScores]], metrics: Sequence[str]
) -> dict[str, dict[str, Estimate | None]]:
    """Each later variant minus the first, unit by unit (the same panel or character of the same story,
    drawn from the same seeds): a setting's effect with its own interval, narrower than two means'."""
    names = list(by_variant)
    if len(names) < 2:
        return {}
    base = {m: metric_values(by_variant[names[0]], m) for m in metrics}
    result = {}
    for name in names[1:]:
        row = {}
        for m in metrics:
            other = metric_values(by_variant[name], m)
            row[m] = bootstrap({key: other[key] - base[m][key] for key in base[m] if key in other})
        result[f"{name} - {names[0]}"] = row
    return result


Table = dict[str, dict[str, Estimate | None]]  # row (a variant, or a difference of two) -> metric -> estimate


@dataclass
class Comparison:
    means: Table
    differences: Table  # each later variant minus the first, paired by unit


def compare(by_variant: dict[str, list[StoryScores]]) -> Comparison:
    """Each variant's means and each later variant's paired difference from the first, for the metrics
    any variant measured."""
    every = (*PANEL_METRICS, *CHARACTER_METRICS)
    means = {variant: {m: bootstrap(metric_values(scores, m)) for m in every} for variant, scores in by_variant.items()}
    measured = [m for m in every if any(row[m] is not None for row in means.values())]
    return Comparison(
        {variant: {m: row[m] for m in measured} for variant, row in means.items()},
        paired_differences(by_variant, measured),
    )


def comparison_csv(comparison: Comparison) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["row", "kind", "metric", "value", "ci_low", "ci_high", "n"])
    for kind, table in (("mean", comparison.means), ("difference", comparison.differences)):
        for row, estimates in table.items():
            for metric, e in estimates.items():
                bounds = [f"{e.low:.6f}", f"{e.high:.6f}"] if e and e.low is not None else ["", ""]
                numbers = [f"{e.mean:.6f}", *bounds, e.count] if e else ["", "", "", 0]
                writer.writerow([row, kind, metric, *numbers])
    return out.getvalue()


def _markdown_table(table: Table, first: str) -> list[str]:
    metrics = list(next(iter(table.values()), {}))
    lines = [f"| {first} | " + " | ".join(METRIC_TITLES[m] for m in metrics) + " |", "|---|" + "---|" * len(metrics)]
    for row, estimates in table.items():
        cells = [e.shown() if e else "-" for e in estimates.values()]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def comparison_markdown(comparison: Comparison, heading: str) -> str:
    lines = [heading, "", *_markdown_table(comparison.means, "variant")]
    if comparison.differences:
        lines += ["", "Paired differences (the same panels and characters, drawn from the same seeds):", ""]
        lines += _markdown_table(comparison.differences, "difference")
    lines += [
        "",
        f"Means with {CONFIDENCE:.0%} percentile bootstrap intervals ({BOOTSTRAP_SAMPLES} resamples, seeded; "
        "whole stories resampled when there are two or more): CLIP-T over panels, the similarities over "
        "(story, character) pairs. DreamSim is a distance: lower is closer.",
    ]
    return "\n".join(lines) + "\n"
