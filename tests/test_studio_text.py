"""What the studio page reads from its widgets and the lines of text it shows."""

import html
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from storydiffusion.errors import StoryDiffusionError, StoryError
from storydiffusion.pipeline import PanelImage, Progress
from storydiffusion.settings import CONSISTENCY_KINDS, REFERENCE_ADAPTERS, SETTING_RANGES, SettingsError
from storydiffusion.story import story_from_text
from storydiffusion.studio_examples import example_stories
from storydiffusion.studio_gallery import gallery_items
from storydiffusion.studio_status import (
    animation_progress,
    finished_message,
    notice_markdown,
    queued_message,
    step_message,
)
from storydiffusion.studio_text import (
    UI_SETTINGS,
    choice_value,
    direction_value,
    layout_value,
    panel_number_from_ui,
    restored_story,
    selected_panel_number,
    setting_value,
    settings_from_ui,
    shown_if_filled,
    story_box_after_redraw,
    story_from_ui,
    uploaded_path,
)
from storydiffusion.styles import load_styles

WIDGETS = (30.0, 5.5, 768.0, 512.0, 42, 0.25, 2.0, 3.0)  # as Gradio hands them over, in UI_SETTINGS order


def panel(index):
    image = Image.new("RGB", (8, 8))
    return PanelImage(index, image, seed=index, prompt="p", negative_prompt="", characters=(), identity=False)


def progress(panels, step=3, steps=30):
    return Progress(batch=0, batches=1, step=step, steps=steps, panels=panels, kind="k", panels_done=0, panels_total=3)


def test_every_ui_setting_has_a_range():
    assert all(name in SETTING_RANGES for name in UI_SETTINGS)


def test_settings_from_ui_rounds_integer_settings_and_keeps_the_rest():
    settings = settings_from_ui("comic", "blurry", WIDGETS)
    assert (settings.steps, settings.width, settings.height, settings.id_images, settings.window) == (
        30,
        768,
        512,
        2,
        3,
    )
    assert all(isinstance(v, int) for v in (settings.steps, settings.width, settings.seed, settings.window))
    assert settings.guidance == 5.5 and settings.sampling_rate == 0.25 and settings.seed == 42
    assert settings.style == "comic" and settings.negative_prompt == "blurry"


def test_a_large_seed_is_kept_exactly():
    seed = 2**62 + 1
    assert settings_from_ui("none", "", (30, 5, 512, 512, seed, 0.5, 3, 4)).seed == seed


def test_an_empty_seed_box_means_seed_zero_and_an_empty_negative_prompt_none():
    settings = settings_from_ui("none", None, (30, 5, 512, 512, None, 0.5, 3, 4))
    assert settings.seed == 0 and settings.negative_prompt == ""


@pytest.mark.parametrize(
    ("position", "value", "label"),
    [
        (0, "abc", "Steps"),
        (1, None, "Guidance"),
        (2, [512], "Width"),
        (5, True, "Sampling rate"),
        (4, "seven", "Seed"),
        (4, "²", "Seed"),  # str.isdigit() says yes, int() says no
        (4, "١٢٣", "Seed"),  # Arabic-Indic digits: not what the box asks for
        (4, "9" * 5000, "Seed"),  # beyond the 4,300 digits Python reads at all
    ],
)
def test_a_value_that_is_not_a_number_is_refused_under_its_label(position, value, label):
    """What an API client can send where a slider would send a number."""
    values = list(WIDGETS)
    values[position] = value
    with pytest.raises(StoryDiffusionError) as refused:
        settings_from_ui("none", "", values)
    assert str(refused.value).startswith(f"{label}: ") and "is not a number" in str(refused.value)
    assert "allowed" in str(refused.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, 10**6])
def test_numbers_outside_the_range_are_refused_under_the_label(value):
    with pytest.raises(StoryDiffusionError, match="^Guidance must be"):
        settings_from_ui("none", "", (30, value, 512, 512, 0, 0.5, 3, 4))


@pytest.mark.parametrize(("style", "negative"), [(["comic"], ""), ("no-such-style", ""), ("none", 5)])
def test_style_and_negative_prompt_of_the_wrong_kind_are_named(style, negative):
    with pytest.raises(StoryDiffusionError, match="^(Style|Negative prompt): "):
        settings_from_ui(style, negative, WIDGETS)


@pytest.mark.parametrize(("field", "values"), [("Title", (5, "", "")), ("Story", ("", "", {"a": 1}))])
def test_text_boxes_take_text_only(field, values):
    with pytest.raises(StoryDiffusionError, match=f"^{field}: expected text"):
        story_from_ui(*values)


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("Title", ("T\ud800", "[Mia] a girl", "[Mia] runs")),
        ("Characters", ("T", "[Mia] a girl \udfff", "[Mia] runs")),
        ("Story", ("T", "[Mia] a girl", "[Mia] runs \udc00 fast")),
    ],
)
def test_a_lone_surrogate_from_an_api_client_is_refused_naming_the_box(field, values):
    """Half of a UTF-16 pair is not text: it passed the check and broke the run's first write, losing the page."""
    with pytest.raises(
        StoryDiffusionError, match=f"^{field} holds U\\+D[89A-F][0-9A-F]{{2}}, half of a character pair"
    ):
        story_from_ui(*values)


def test_a_lone_surrogate_in_a_story_built_in_code_is_refused_before_a_run():
    from storydiffusion.story.validation import validate_story

    story = story_from_text("[Mia] a girl", "[Mia] runs")
    for changed in (
        replace(story, title="x\ud800"),
        replace(story, panels=[replace(story.panels[0], caption="\udc80")]),
    ):
        with pytest.raises(StoryError, match="a lone surrogate"):
            validate_story(changed)


def test_a_huge_text_box_is_refused_before_parsing():
    with pytest.raises(StoryDiffusionError, match="^Story: .* too long"):
        story_from_ui("T", "[Bob] a man", "[Bob] walks\n" * 100_000)


def test_settings_from_ui_wants_every_widget():
    with pytest.raises(ValueError):
        settings_from_ui("none", "", WIDGETS[:-1])


def test_out_of_range_values_are_reported_under_the_widgets_label():
    with pytest.raises(StoryDiffusionError, match="^Width must be a multiple of 8"):
        settings_from_ui("none", "", (30, 5, 100, 512, 0, 0.5, 3, 4))


def test_story_from_ui_gives_an_empty_title_the_default_one():
    story = story_from_ui("", "[Bob] a man", "[Bob] walks\n[Bob] sits")
    assert story.title and len(story.panels) == 2
    assert queued_message(story) == "Queued: 2 panels, 1 character."


def test_a_gallery_click_picks_the_panel_of_its_caption(tmp_path):
    items = gallery_items([panel(2), panel(0)], tmp_path)
    assert [caption for _, caption in items] == ["Panel 1", "Panel 3"]
    assert selected_panel_number(1, {"caption": items[1][1]}) == 3  # panel 2 is missing: the caption wins
    assert selected_panel_number(1, {"caption": None}) == 2
    assert selected_panel_number(4, "not a dict") == 5


def test_panel_numbers_from_a_number_box():
    assert panel_number_from_ui(2.0) == 2
    with pytest.raises(StoryDiffusionError, match="From panel"):
        panel_number_from_ui(None, "From panel")


def test_progress_lines():
    assert step_message(progress([0, 2])) == "Panels 1, 3: step 3 of 30"
    assert step_message(progress([4, 5, 6, 7])) == "Panels 5-8: step 3 of 30"
    assert step_message(progress([2])) == "Panel 3: step 3 of 30"
    assert step_message(progress([])) == "Reference portraits: step 3 of 30"
    identity = Progress(
        batch=0, batches=2, step=1, steps=30, panels=[0, 1], kind="identity", panels_done=0, panels_total=4
    )
    assert step_message(identity) == "Panels 1-2 (identity set): step 1 of 30"
    later = Progress(batch=7, batches=9, step=2, steps=4, panels=[27, 28], kind="k", panels_done=27, panels_total=500)
    assert step_message(later) == "Panels 28-29: step 2 of 4 (27 of 500 done)"
    assert animation_progress(4, 8) == (0.5, "Step 4 of 8")
    assert animation_progress(0, 0) == (0.0, "Step 0 of 0")


def test_finished_message_says_done_or_stopped_and_lists_warnings():
    result = type("Result", (), {"panels": [1, 2], "seconds": 5.25, "warnings": [], "cancelled": False})()
    assert finished_message(result, 2) == "Done: 2 of 2 panels in 5.2 s."
    assert (
        finished_message(result, 2, typeset_seconds=31.25) == "Done: 2 of 2 panels in 5.2 s; pages typeset in 31.2 s."
    )
    result.cancelled, result.warnings = True, ["prompt truncated"]
    assert (
        finished_message(result, 3)
        == "Stopped after 2 of 3 panels (5.2 s); the finished panels are kept.\n\n- Prompt truncated"
    )
    result.panels = []
    assert finished_message(result, 3).startswith("Stopped after 0 of 3 panels (5.2 s).")
    assert finished_message(result, 3, kept_last=True).startswith("Stopped after 0 of 3 panels (5.2 s); the last story")


def test_example_stories_set_everything_they_need_with_valid_values():
    examples = example_stories()
    assert examples
    for title, (
        same_title,
        characters,
        panels,
        style,
        seed,
        layout,
        direction,
        adapter,
        *scales,
        shared,
        note,
    ) in examples.items():
        assert same_title == title
        assert story_from_text(characters, panels, title=title).title == title
        assert choice_value("Style", style, list(load_styles()[0])) and setting_value("seed", seed) == int(seed)
        assert layout_value(layout) == layout and adapter in REFERENCE_ADAPTERS and shared in CONSISTENCY_KINDS
        assert direction_value(direction) in ("rtl", None)
        assert [setting_value(name, value) for name, value in zip(("reference_scale", "control_scale"), scales)]
        assert note == "" or note.startswith("This example steers with files: upload ")
    lighthouse = ("comic", "7", "classic", "layout", "image", 0.6, 0.8, "uniform", "")
    assert examples["The Lighthouse Keeper"][3:] == lighthouse
    assert examples["يوم في السوق"][5:7] == ("classic", "rtl")  # lettered in Arabic: its pages read right to left
    assert examples["지민의 하루"][3] == "manga" and examples["지민의 하루"][5:7] == ("manga", "layout")
    assert examples["Market Day"][10] == "subject"  # as examples/market_day.yaml says
    assert examples["Nora, Years Later"][7:9] == ("face", 0.7)  # examples/from_a_face.yaml: FaceID at 0.7


@pytest.mark.parametrize("example", ["from_a_photo.yaml", "from_a_face.yaml", "posed.yaml"])
def test_an_example_that_steers_with_files_names_the_uploads_that_give_its_story_back(example, tmp_path):
    """The page reads only uploaded files: the note names each one as the page matches uploads, and the
    example's own files uploaded under those names make the story the example's file describes."""
    import re
    import shutil

    from storydiffusion.resources import data_path
    from storydiffusion.story import load_story
    from storydiffusion.studio_uploads import story_uploads

    path = data_path("examples", example)
    original = load_story(path)
    title, characters, panels, *_, note = example_stories()[original.title]
    story = story_from_text(characters, panels, title=title)
    named = re.findall(r"[\w-]+\.png", note)
    sources = [c.reference for c in original.characters.values() if c.reference]
    sources += [p.control.image for p in original.panels if p.control is not None]
    assert len(named) == len(sources) > 0 and "upload" in note
    records = []
    for name, source in zip(named, sources):
        shutil.copy(path.parent / source, tmp_path / name)
        records.append({"path": str(tmp_path / name), "meta": {"_type": "gradio.FileData"}})
    photos = [r for r in records if not r["path"].split("/")[-1][0].isdigit()]
    controls = [r for r in records if r not in photos]
    given = story_uploads(story, photos, controls, [r["path"] for r in records]).apply(story)
    assert {n: bool(c.reference) for n, c in given.characters.items()} == {
        n: bool(c.reference) for n, c in original.characters.items()
    }
    assert [p.control and p.control.kind for p in given.panels] == [
        p.control and p.control.kind for p in original.panels
    ]


def test_the_model_banner_puts_its_lead_in_bold():
    assert (
        notice_markdown("Offline demo: tiny model. Start with --model x.")
        == "**Offline demo:** tiny model. Start with --model x."
    )
    assert notice_markdown("") == ""


@pytest.mark.parametrize("value", ["2", True, float("nan"), [2], 2.5, 0, -1, 10**20, 1e300])
def test_a_panel_number_that_is_not_a_number_is_named(value):
    """Out of range too: the editor echoes the number back, and a page's JSON cannot hold 10**20."""
    with pytest.raises(StoryDiffusionError, match="^To panel: .* is not a panel number"):
        panel_number_from_ui(value, "To panel")


def test_dropdown_values_must_be_among_the_choices():
    assert layout_value("manga") == "manga"
    for value in ("no-such-layout", None, ["manga"], 3):
        with pytest.raises(StoryDiffusionError, match="^Layout: "):
            layout_value(value)
    from storydiffusion.studio_text import choice_value

    with pytest.raises(StoryDiffusionError) as refused:  # a title with a comma in it stays one choice
        choice_value("Examples", "Nora", ["Nora, Years Later", "Market Day"])
    assert str(refused.value) == "Examples: 'Nora' is not one of 'Nora, Years Later', 'Market Day'"


def test_an_upload_is_taken_only_as_gradios_record_of_a_file_uploaded_to_this_server(tmp_path):
    cache = tmp_path / "cache"
    (cache / "5e3a").mkdir(parents=True)
    (cache / "5e3a" / "y.zip").write_bytes(b"PK")
    (cache / "77b1").mkdir()
    (cache / "77b1" / "their-project.zip").write_bytes(b"PK")  # written by the server: another session's download
    (tmp_path / "secret.zip").write_bytes(b"PK")
    uploads = {str(cache / "5e3a" / "y.zip")}
    meta = {"_type": "gradio.FileData"}
    record = {"path": str(cache / "5e3a" / "y.zip"), "orig_name": "y.zip", "meta": meta}
    assert uploaded_path("Project", record, uploads) == str(cache / "5e3a" / "y.zip")
    with pytest.raises(StoryDiffusionError, match="^Project: choose a file"):
        uploaded_path("Project", None, uploads)
    no_meta = {"path": str(cache / "5e3a" / "y.zip")}
    for value in ("/etc/passwd", {"url": "http://x"}, 5, ["a.zip"], no_meta):  # only Gradio's checked record
        with pytest.raises(StoryDiffusionError, match="^Project: expected an uploaded file") as refused:
            uploaded_path("Project", value, uploads)
        assert str(tmp_path) not in str(refused.value)
    outside = [
        cache / "77b1" / "their-project.zip",
        tmp_path / "secret.zip",
        cache / "5e3a" / ".." / ".." / "secret.zip",
        cache / "none.zip",
        cache,
    ]
    for path in outside:  # existing or not, the same words: the answer reveals nothing of the server's files
        with pytest.raises(StoryDiffusionError) as refused:
            uploaded_path("Project", {"path": str(path), "meta": meta}, uploads)
        assert str(refused.value) == "Project: that file was not uploaded to this studio; upload it again"


@pytest.mark.parametrize(
    ("position", "label"), [(0, "Steps"), (6, "Identity images"), (7, r"Window \(panels per batch\)")]
)
def test_whole_number_settings_refuse_fractions_but_take_a_sliders_float(position, label):
    values = list(WIDGETS)
    values[position] = 2.0
    assert settings_from_ui("none", "", values).to_dict()[UI_SETTINGS[position]] == 2
    values[position] = 1.5
    with pytest.raises(StoryDiffusionError, match=f"^{label} must be .*1.5"):
        settings_from_ui("none", "", values)


@pytest.mark.parametrize(
    "before, after, index, box, written",
    [
        (  # a later line edited since: only the redrawn panel's line changes
            "[Bob] sits # Zzz.\n[Bob] walks",
            "[Bob] naps # Zzz.\n[Bob] walks",
            0,
            "[Bob] sits # Zzz.\n\n[Bob] walks, typed and not yet typeset",
            "[Bob] naps # Zzz.\n\n[Bob] walks, typed and not yet typeset",
        ),
        (  # a next panel typed after the drawn ones, not drawn yet
            "[Bob] sits\n[Bob] reads # Quiet.\n[Bob] walks",
            "[Bob] sits\n[Bob] sleeps under a tree # Quiet.\n[Bob] walks",
            1,
            "[Bob] sits\n[Bob] reads # Quiet.\n[Bob] walks\n[Bob] a fourth line",
            "[Bob] sits\n[Bob] sleeps under a tree # Quiet.\n[Bob] walks\n[Bob] a fourth line",
        ),
    ],
)
def test_a_redrawn_panel_writes_only_its_own_line_back_to_the_story_box(before, after, index, box, written):
    story = story_from_ui("T", "[Bob] a man", after)
    assert story_box_after_redraw(box, before, story, index) == (written, None)


@pytest.mark.parametrize(
    "box",
    [
        "[Ana] a new story typed since\n[Ana] with two lines",  # as many lines: no line of it is swapped
        "[Ana] a new story of one line",
        "[Bob] sleeps, typed into the redrawn panel's own line\n[Bob] walks",
        "[Bob] a line put in front\n[Bob] sits # Zzz.\n[Bob] walks",  # more lines, but the panel's line moved
    ],
)
def test_a_redraw_never_replaces_what_the_user_typed_in_the_story_box(box):
    before = "[Bob] sits # Zzz.\n[Bob] walks"
    story = story_from_ui("T", "[Bob] a man", "[Bob] naps # Zzz.\n[Bob] walks")
    kept, note = story_box_after_redraw(box, before, story, 0)
    assert kept == box and "kept as you typed it" in note and note.endswith("panel 1's line is now: [Bob] naps # Zzz.")


def test_file_boxes_are_shown_only_once_they_hold_a_file():
    assert [update["visible"] for update in shown_if_filled("a.pdf", None, "")] == [True, False, False]
    assert shown_if_filled("p.zip")["visible"] is True  # one box: one update, not a tuple


def test_a_story_kept_by_the_browser_comes_back_and_nothing_else_does():
    assert restored_story(["T", "[Bob] a man", "[Bob] walks"]) == ("T", "[Bob] a man", "[Bob] walks")
    for kept in (["", "", ""], None, "junk", [1, 2, 3], ["a", "b"]):
        assert all(update == {"__type__": "update"} for update in restored_story(kept))
    # A page load that lands after typing began puts nothing back over it (it once emptied a typed story).
    kept = ["T", "[Bob] a man", ""]
    assert restored_story(kept, "My story", "", "") == ("T", "[Bob] a man", "")
    typing = restored_story(kept, "My story", "[Mia] a girl in a red dress", "")
    assert all(update == {"__type__": "update"} for update in typing)


@pytest.mark.parametrize(
    ("characters", "story", "start"),
    [
        ("[Mia] a girl", "  \n ", "Story: write one panel per line, e.g. [Mia]"),
        ("Mia a girl", "[Mia] runs", "Characters, line 1: a character line must start with a [Name] tag"),
        ("[Mia] a girl", "[Mia] runs\n[Bob] waves", "Story, line 2: panel names unknown character [Bob]"),
    ],
)
def test_a_story_mistake_names_the_box_it_is_in_without_story_file_words(characters, story, start):
    with pytest.raises(StoryDiffusionError) as refused:
        story_from_ui("Title", characters, story)
    assert str(refused.value).startswith(start) and "story file" not in str(refused.value)


def test_a_story_over_the_panel_limit_is_told_in_the_pages_words():
    with pytest.raises(StoryError) as refused:
        story_from_ui("Long", "[Bob] a man", "\n".join(["[Bob] walks"] * 600))
    assert (
        str(refused.value)
        == "Story: 600 panels is more than the 500 a story may have here: split it into several stories"
    )


def test_counts_are_singular_for_one_and_a_loaded_title_is_shown_plainly():
    from storydiffusion.studio_status import loaded_message, panels_done_message

    one = story_from_ui("Solo", "[Bob] a man", "[Bob] walks")
    assert queued_message(one) == "Queued: 1 panel, 1 character."
    assert panels_done_message(1, 1) == "1 of 1 panel done"
    hostile = story_from_ui("Kite\u202e day " + "x" * 100, "[Bob] a man", "[Bob] walks")  # (a bell is refused)
    message = loaded_message(hostile, 1)
    assert message.startswith("Loaded project 'Kite day xxx") and message.endswith("…': 1 panel.")
    assert "\u202e" not in message


def test_pages_without_a_layout_are_not_called_a_layout_named_none():
    from storydiffusion.studio_status import layout_chosen_message, typeset_message

    assert typeset_message("manga") == "Pages typeset with the manga layout."
    assert "none layout" not in typeset_message("none") and "one page per panel" in typeset_message("none")
    assert layout_chosen_message("none", typeset=True) == typeset_message("none")


def test_a_panel_number_below_one_or_past_the_end_is_said_without_a_limit_the_story_lacks():
    from storydiffusion.studio_text import no_such_panel, panel_number_from_ui

    with pytest.raises(StoryDiffusionError, match=r"^Panel: 0 is not a panel number \(1 is the first panel\)$"):
        panel_number_from_ui(0)
    with pytest.raises(StoryDiffusionError, match=r"^From panel: -1 is not a panel number \(1 is the first panel\)$"):
        panel_number_from_ui(-1, "From panel")
    assert no_such_panel(7, 3) == "Panel: there is no panel 7; the story has 3 panels (1 is the first)"
    assert no_such_panel(2, 1) == "Panel: there is no panel 2; the story has 1 panel (1 is the first)"


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("-1", "Seed must be 0..9223372036854775807, got -1"),  # a number, refused for its range
        ("+3", None),
        ("1.5", "Seed: '1.5' is not a whole number: allowed 0..9223372036854775807"),
        ("abc", "Seed: 'abc' is not a number: type digits 0-9"),
        ("١٢", "Seed: '١٢' is not a number"),  # digits of another script are not taken as these
        ("1e5", "is not a number"),
    ],
)
def test_a_typed_seed_is_refused_for_what_it_is(typed, words):
    if words is None:
        assert setting_value("seed", typed) == 3
        return
    with pytest.raises(SettingsError) as refused:
        setting_value("seed", typed)
    assert words in str(refused.value) and "2**" not in str(refused.value)


@pytest.mark.parametrize(
    ("title", "characters", "story", "where"),
    [
        ("T\x00", "[Mia] a girl", "[Mia] runs", "title"),
        ("T", "[Mia] a girl\x07", "[Mia] runs", "characters.Mia.description"),
        ("T", "[Mia] a girl", "[Mia] runs # the end\x1b", "panel 1: caption"),
        ("T", "[Mia] a girl", "[Mia] runs # Run. @Mia: hi\x7f", "panel 1: dialogue 1: text"),
    ],
)
def test_a_control_character_typed_or_sent_into_a_box_is_refused_by_where_it_is(title, characters, story, where):
    with pytest.raises(StoryError, match=rf"{where} holds the control character U\+00"):
        story_from_ui(title, characters, story)


def test_what_a_user_typed_reaches_a_status_line_as_text_never_as_markup():
    from storydiffusion.studio_status import loaded_message, regenerated_message, with_warnings
    from storydiffusion.studio_text import plain_markdown

    typed = "<h1>*Mia*</h1> [x](y) $$z$$ `c` #1 a_b ~s~ |t| \\"
    written = plain_markdown(typed)
    assert not any(char in written for char in "<>*[]$`_~|\\")  # "#" stays only in "&#...;" references
    assert html.unescape(written) == typed  # a character reference each, shown as typed
    assert html.unescape(with_warnings("Done.", [typed]).split("- ", 1)[1]) == typed[:1].upper() + typed[1:]
    story = story_from_text("[Mia] a girl", "[Mia] walks", title="**Bold** <b>title</b>")
    assert "**" not in loaded_message(story, 1) and "<b>" not in loaded_message(story, 1)
    assert html.unescape(regenerated_message(2, typed)) == f"Panel 2 redrawn. {typed}"


def test_a_status_line_shows_text_reordering_controls_by_their_code():
    """A file or title holding a right-to-left override would show on the line as another name."""
    from storydiffusion.studio_text import plain_markdown

    line = plain_markdown("x\u202eevil.zip and \u2066isolated\u2069 are not project files")
    assert not set(line) & {"\u202e", "\u2066", "\u2069"}
    assert "&#92;u202eevil.zip" in line and "&#92;u2066isolated&#92;u2069" in line
    assert plain_markdown("שלום and مرحبا") == "שלום and مرحبا"  # right-to-left words themselves stay as written


def test_a_saved_project_asked_with_a_bank_it_cannot_hold_says_so(tmp_path):
    import zipfile

    from storydiffusion.project import BANK_NAME
    from storydiffusion.studio_status import saved_project_message

    without, with_bank = tmp_path / "a-project.zip", tmp_path / "b-project.zip"
    with zipfile.ZipFile(without, "w") as archive:
        archive.writestr("project.json", "{}")
    with zipfile.ZipFile(with_bank, "w") as archive:
        archive.writestr(BANK_NAME, b"x")
    assert "It holds no identity bank" in saved_project_message(str(without), asked_for_bank=True)
    assert "identity bank" not in saved_project_message(str(without))  # not asked: nothing to say
    assert "identity bank" not in saved_project_message(str(with_bank), asked_for_bank=True)


def test_gallery_pictures_are_files_written_once_so_a_streamed_update_never_rewrites_one(tmp_path):
    """Handed as Pillow images, Gradio rewrote each panel's cached file at every streamed update, and a
    browser still reading panel 1 got a cut-short file (a broken thumbnail)."""
    first = gallery_items([panel(0)], tmp_path)
    written = Path(first[0][0])
    stamp = written.stat().st_mtime_ns
    again = gallery_items([panel(0), panel(1)], tmp_path)  # the next update: panel 1 as it was, then panel 2
    assert again[0] == first[0] and written.stat().st_mtime_ns == stamp  # the same file, not written again
    assert [Image.open(file).size for file, _ in again] == [(8, 8), (8, 8)]
    redrawn = PanelImage(
        0, Image.new("RGB", (8, 8), "red"), seed=9, prompt="p", negative_prompt="", characters=(), identity=False
    )
    after = gallery_items([redrawn, panel(1)], tmp_path)
    assert after[0][0] != first[0][0] and not written.exists()  # a redrawn panel is a new file; the old one goes
    assert sorted(p.name for p in (tmp_path / "gallery").iterdir()) == sorted(Path(f).name for f, _ in after)
