"""The studio session behind the web app: every UI action as a library call."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from storydiffusion.errors import GenerationCancelled, StoryDiffusionError, is_out_of_memory
from storydiffusion.settings import SETTING_RANGES, GenerationSettings
from storydiffusion.story import story_from_text
from storydiffusion.streaming import PanelDone, RunFinished
from storydiffusion.studio import MAX_DICE_SEED, StudioSession, close_session, random_seed, session_of

CHARACTERS = "[Mia] a girl with curly black hair and a red dress\n[Leo] a boy with blond hair and round glasses"
STORY = "[Mia] flies a kite # A windy day. @Mia: Look!\n[Leo] reads # Leo reads.\n[Mia] and [Leo] talk # @Leo: Hi!"


def make_story(text=STORY):
    settings = GenerationSettings(style="none", id_images=1, window=2, steps=2)
    return story_from_text(CHARACTERS, text, title="Kite Day", settings=settings)


@pytest.fixture
def session(tmp_path, tiny_sdxl):
    studio = StudioSession(workdir=tmp_path / "session")
    story = make_story()
    events = list(studio.generate(tiny_sdxl, story, story.settings, "tiny-sdxl"))
    assert isinstance(events[-1], RunFinished)
    yield studio
    studio.close()


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=int)


def test_generation_writes_each_panel_as_it_finishes(session):
    panels = sorted((session.run_dir / "panels").glob("*.png"))
    assert [p.name for p in panels] == ["panel_001.png", "panel_002.png", "panel_003.png"]
    assert (session.run_dir / "story.json").exists()


def test_retypeset_with_another_layout_or_new_captions_keeps_the_images(session):
    before = {p.name: p.read_bytes() for p in (session.run_dir / "panels").glob("*.png")}
    first = session.retypeset("classic")
    assert first.files["pdf"].exists() and first.files["cbz"].exists() and len(first.pages) >= 1
    strip = session.retypeset("strip")
    assert strip.template == "strip"
    edited = make_story(STORY.replace("A windy day.", "A very, very windy day indeed."))
    page_before = pixels(session.retypeset("classic").pages[0])
    page_after = pixels(session.retypeset("classic", edited).pages[0])
    assert np.abs(page_before - page_after).max() > 0
    assert session.story.panels[0].caption == "A very, very windy day indeed."
    assert {p.name: p.read_bytes() for p in (session.run_dir / "panels").glob("*.png")} == before


def test_choosing_a_layout_before_any_panel_is_kept_for_later_not_an_error(tmp_path, tiny_sdxl):
    studio = StudioSession(workdir=tmp_path / "fresh")
    assert studio.choose_layout("manga") is None
    assert studio.layout == "manga" and studio.pages is None
    with pytest.raises(StoryDiffusionError, match="unknown"):
        studio.choose_layout("no-such-layout")
    story = make_story()
    list(studio.generate(tiny_sdxl, story, story.settings, "tiny-sdxl"))
    assert studio.retypeset().template == "manga"
    assert studio.choose_layout("strip").template == "strip"
    studio.close()


def test_retypeset_refuses_changed_prompts_naming_the_panels(session):
    with pytest.raises(StoryDiffusionError, match="^Story: the prompt of panel 1 changed; .*regenerate"):
        session.retypeset("classic", make_story(STORY.replace("flies a kite", "eats cake")))
    with pytest.raises(StoryDiffusionError, match="^Story: the Story box has 4 panels, the drawn story 3; "):
        session.retypeset("classic", make_story(STORY + "\n[Mia] waves"))


def test_regenerate_one_panel_changes_only_that_panel(session, tiny_sdxl):
    before = {p.index: p.image.tobytes() for p in session.panels()}
    bank = session.result.bank
    panel = session.regenerate_panel(tiny_sdxl, 2, seed=77)
    after = {p.index: p.image.tobytes() for p in session.panels()}
    assert panel.seed == 77 and after[2] != before[2]
    assert after[0] == before[0] and after[1] == before[1]
    assert session.result.bank is bank  # the identity bank was kept, not rebuilt
    edited = session.regenerate_panel(tiny_sdxl, 1, prompt="[Leo] climbs a tree", seed=5)
    assert "climbs a tree" in edited.prompt and session.story.panels[1].caption == "Leo reads."
    with pytest.raises(StoryDiffusionError, match="no panel 9"):
        session.regenerate_panel(tiny_sdxl, 8)


def test_project_round_trip_continues_in_a_new_session(session, tiny_sdxl, tmp_path):
    path = session.save_project(include_bank=True)
    assert path.suffix == ".zip"
    other = StudioSession(workdir=tmp_path / "other")
    project = other.load_project(path, tiny_sdxl)
    assert project.story.title == "Kite Day"
    assert [p.image.tobytes() for p in other.panels()] == [p.image.tobytes() for p in session.panels()]
    assert other.result.bank.characters == session.result.bank.characters
    assert other.retypeset("classic").files["pdf"].exists()
    redrawn = other.regenerate_panel(tiny_sdxl, 0, seed=session.result.panel(0).seed)
    assert (
        np.abs(np.asarray(redrawn.image, dtype=int) - np.asarray(session.result.panel(0).image, dtype=int)).max() <= 1
    )
    assert other.result.bank is project.bank  # a project that carries its bank is read with it, not rebuilt


def test_a_session_drawing_saves_no_project_and_loads_none(session, tiny_sdxl, tmp_path):
    """A run in progress (or waiting for its turn) would save half a story, or draw over a project loaded
    meanwhile when it ends: both are refused, and the session's work stays as it was."""
    path = session.save_project()
    other = StudioSession(workdir=tmp_path / "other")
    other.expect_run()  # Generate pressed: the run waits for the GPU
    with pytest.raises(StoryDiffusionError, match="Project: this session is drawing .* load the project once"):
        other.load_project(path, tiny_sdxl)
    assert other.story is None and other.result is None
    session.expect_run()
    with pytest.raises(StoryDiffusionError, match="save the project once it is done, or press Stop"):
        session.save_project()
    session.run_over()
    assert session.save_project().is_file()


def test_a_project_that_fails_to_typeset_leaves_the_session_as_it_was(session, tiny_sdxl, tmp_path, monkeypatch):
    import storydiffusion.studio_projects as studio_module
    from storydiffusion.layout import LayoutError

    session.retypeset("classic")
    other = StudioSession(workdir=tmp_path / "other")
    other_story = make_story("[Mia] flies a kite\n[Leo] waves")
    list(other.generate(tiny_sdxl, other_story, other_story.settings, "tiny-sdxl"))
    path = other.save_project(include_bank=False)
    before = {p.relative_to(session.workdir): p.read_bytes() for p in session.workdir.rglob("*") if p.is_file()}
    story, result, pages = session.story, session.result, session.pages

    def fails(*args, **kwargs):
        raise LayoutError("this panel cannot be typeset")

    monkeypatch.setattr(studio_module, "compose_run", fails)
    with pytest.raises(LayoutError):
        session.load_project(path, tiny_sdxl, layout="grid")
    assert (session.story, session.result, session.pages) == (story, result, pages)
    after = {p.relative_to(session.workdir): p.read_bytes() for p in session.workdir.rglob("*") if p.is_file()}
    assert after == before  # the panels, pages and downloads on disk too, and nothing left of the attempt
    monkeypatch.undo()
    session.load_project(path, tiny_sdxl, layout="grid")
    assert session.story.title == other_story.title and session.layout == "classic" and session.pages.pages  # its own
    assert all(page.is_file() and session.run_dir in page.parents for page in session.pages.pages)
    assert session.downloads().pdf is not None


def test_a_redraw_is_refused_by_the_field_at_fault(session, tiny_sdxl, tiny_sd15):
    with pytest.raises(
        StoryDiffusionError, match=r"^Panel: there is no panel 9; the story has 3 panels \(1 is the first\)$"
    ):
        session.regenerate_panel(tiny_sd15, 8)
    with pytest.raises(StoryDiffusionError, match="^Model: this story was drawn with tiny-sdxl; choose it again"):
        session.regenerate_panel(tiny_sd15, 0, model="tiny-sd15")  # the Model menu changed before Regenerate
    before = [panel.image.tobytes() for panel in session.panels()]
    with pytest.raises(StoryDiffusionError, match=r"^Prompt: .*unknown character \[Zed\]"):
        session.regenerate_panel(tiny_sdxl, 0, prompt="[Zed] waves")
    assert [panel.image.tobytes() for panel in session.panels()] == before


def test_a_loaded_project_is_redrawn_with_the_model_that_drew_it_whatever_the_menu_said(
    session, tiny_sdxl, tiny_sd15, tmp_path
):
    path = session.save_project(include_bank=True)
    other = StudioSession(workdir=tmp_path / "other")
    other.load_project(path, tiny_sd15)  # the menu showed tiny-sd15 when the upload came; the page then switches it
    with pytest.raises(StoryDiffusionError, match="^Model: this story was drawn with tiny-sdxl"):
        other.regenerate_panel(tiny_sd15, 0, model="tiny-sd15")
    assert other.regenerate_panel(tiny_sdxl, 0, model="tiny-sdxl").index == 0


def bank_tensors(bank, path):
    """The tokens of a bank as its safetensors file holds them, by ``source.step.layer``."""
    bank.save(path)
    return load_file(path)


def test_a_project_without_its_bank_redraws_a_panel_exactly_as_the_session_that_kept_it(session, tiny_sdxl, tmp_path):
    session.regenerate_panel(tiny_sdxl, 0, seed=77)  # Mia's identity panel gets a new seed; her bank stays the run's
    path = session.save_project()
    with zipfile.ZipFile(path) as archive:
        assert not [name for name in archive.namelist() if name.endswith(".safetensors")]
    other = StudioSession(workdir=tmp_path / "other")
    other.load_project(path, tiny_sdxl)
    assert other.result.bank is None
    kept = session.regenerate_panel(tiny_sdxl, 2, seed=5)  # Mia and Leo: reads both identity sets
    rebuilt = other.regenerate_panel(tiny_sdxl, 2, seed=5)
    assert rebuilt.image.tobytes() == kept.image.tobytes()
    bank = other.result.bank
    assert bank.characters == session.result.bank.characters
    made, remade = bank_tensors(session.result.bank, tmp_path / "made.st"), bank_tensors(bank, tmp_path / "remade.st")
    assert made.keys() == remade.keys() and all(torch.equal(made[key], remade[key]) for key in made)
    other.regenerate_panel(tiny_sdxl, 1, seed=9)
    assert other.result.bank is bank  # rebuilt once, then kept for later redraws


def test_a_project_without_its_bank_is_a_small_fraction_of_one_with_it(session):
    bankless = session.save_project().read_bytes()
    with_bank = session.save_project(include_bank=True)
    with zipfile.ZipFile(with_bank) as archive:
        assert "identity_bank.safetensors" in archive.namelist()
    # What the bankless project leaves out is the bank: (nearly) all of its bytes, however small the panels.
    left_out = with_bank.stat().st_size - len(bankless)
    assert session.result.bank.nbytes() * 0.7 < left_out and len(bankless) * 3 < with_bank.stat().st_size


def test_stop_keeps_the_panels_already_made(tmp_path, tiny_sdxl):
    studio = StudioSession(workdir=tmp_path / "s")
    story = make_story()
    events = []
    for event in studio.generate(tiny_sdxl, story, story.settings, "tiny-sdxl"):
        events.append(event)
        if isinstance(event, PanelDone):
            assert studio.stop()  # a run was going
    assert events[-1].result.cancelled and 1 <= len(studio.panels()) < 3
    assert not studio.running and not studio.stop()  # nothing to stop afterwards
    studio.typeset_if_drawn()  # the pages say which panels they lack; the status line, in the page's words
    assert any("missing" in warning for warning in studio.pages.warnings)
    assert not any("missing" in warning for warning in studio.page_warnings)


def test_a_new_run_stopped_before_its_first_panel_leaves_the_last_comic_as_it_was(tmp_path, tiny_sdxl):
    """Generate, then Generate again and Stop at once: the first story's files, panels and pages stay."""
    studio = StudioSession(workdir=tmp_path / "s")
    story = make_story()
    list(studio.generate(tiny_sdxl, story, story.settings, "tiny-sdxl"))
    studio.typeset_if_drawn()
    before = {path: path.read_bytes() for path in studio.run_dir.rglob("*") if path.is_file()}
    first_panels = [panel.image.tobytes() for panel in studio.panels()]
    other = story_from_text("[Mia] a girl in a red coat\n", "[Mia] runs\n[Mia] jumps")
    events = []
    for event in studio.generate(tiny_sdxl, other, story.settings, "tiny-sdxl"):
        events.append(event)
        studio.stop()  # at its first step, before any panel
    assert events[-1].result.cancelled and not events[-1].result.panels
    assert {path: path.read_bytes() for path in studio.run_dir.rglob("*") if path.is_file()} == before
    assert [panel.image.tobytes() for panel in studio.panels()] == first_panels and studio.story == story
    assert studio.typeset_if_drawn().pdf is not None  # its pages and files come back
    assert sorted(path.name for path in studio.home.iterdir()) == ["downloads", "run"]  # no staging left behind
    # A run that draws replaces it from its first panel on.
    list(studio.generate(tiny_sdxl, other, story.settings, "tiny-sdxl"))
    assert studio.story.panels[0].prompt != story.panels[0].prompt and len(studio.panels()) == 2


def test_a_stop_with_nothing_running_never_cancels_the_next_run(tmp_path, tiny_sdxl):
    studio = StudioSession(workdir=tmp_path / "s")
    assert not studio.stop()
    story = make_story()
    events = list(studio.generate(tiny_sdxl, story, story.settings, "tiny-sdxl"))
    assert not events[-1].result.cancelled and len(studio.panels()) == 3


def test_a_stop_while_an_announced_run_waits_for_the_gpu_ends_it_before_its_first_step(tmp_path, tiny_sdxl):
    studio = StudioSession(workdir=tmp_path / "s")
    studio.expect_run()  # the page's Generate passed its check; the run waits in the queue
    assert studio.stop()  # reaches it: not "nothing is running"
    story = make_story()
    events = list(studio.generate(tiny_sdxl, story, story.settings, "tiny-sdxl"))
    assert events[-1].result.cancelled and studio.panels() == [] and not studio.running
    studio.expect_run()
    studio.run_over()  # refused before it began: the next run is not cancelled by anything earlier
    assert not studio.stop()
    assert not list(studio.generate(tiny_sdxl, story, story.settings, "tiny-sdxl"))[-1].result.cancelled


def test_actions_before_generating_are_clear_errors(tmp_path, tiny_sdxl):
    studio = StudioSession(workdir=tmp_path / "empty")
    for action in (
        lambda: studio.retypeset("classic"),
        studio.save_project,
        lambda: studio.regenerate_panel(tiny_sdxl, 0),
    ):
        with pytest.raises(StoryDiffusionError, match="generate"):
            action()


def test_dice_draws_different_seeds_that_settings_and_a_web_page_accept():
    seeds = [random_seed() for _ in range(50)]
    assert len(set(seeds)) > 1  # the dice changes the seed
    for seed in seeds:
        assert 0 <= seed <= MAX_DICE_SEED
        GenerationSettings(seed=seed).validate()
    assert MAX_DICE_SEED <= SETTING_RANGES["seed"].high


def test_panels_are_visible_while_the_run_is_going(tmp_path, tiny_sdxl):
    studio = StudioSession(workdir=tmp_path / "live")
    story = make_story()
    counts = []
    for event in studio.generate(tiny_sdxl, story, story.settings, "tiny-sdxl"):
        if isinstance(event, PanelDone):
            shown = [panel.index for panel in studio.panels()]
            assert event.panel.index in shown and shown == sorted(shown)
            counts.append(len(shown))
    assert counts == [1, 2, 3]


def test_downloads_are_the_composed_pages_and_files(session):
    assert session.downloads().as_tuple() == ([], None, None, None)
    session.retypeset("classic")
    pages, pdf, cbz, panels_zip = session.downloads().as_tuple()
    assert pages and all(isinstance(page, str) for page in pages)
    names = [Path(path).name for path in (pdf, cbz, panels_zip, session.save_project())]
    assert names == ["kite-day.pdf", "kite-day.cbz", "kite-day-panels.zip", "kite-day-project.zip"]
    assert Path(pdf).read_bytes() == (session.run_dir / "comic.pdf").read_bytes()


def test_out_of_memory_is_recognised():
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(ValueError("bad"))


@pytest.mark.slow
def test_animate_between_two_panels_writes_mp4_and_gif(session):
    import imageio.v3 as iio

    from storydiffusion.motion.animate import load_transition_pipeline

    result = session.animate(load_transition_pipeline("tiny"), 1, 3, frames=6, fps=4, steps=2)
    assert result.mp4.name == "01-03.mp4" and result.gif.exists()
    assert len(list(iio.imiter(result.mp4))) == 6
    assert "linear interpolation" in result.note
    with pytest.raises(StoryDiffusionError, match="^To panel: there is no panel 7; choose panels between 1 and"):
        session.animate(load_transition_pipeline("tiny"), 1, 7)
    with pytest.raises(StoryDiffusionError, match="^From panel: there is no panel 123;"):  # each named by its box
        session.animate(load_transition_pipeline("tiny"), 123, 2)
    with pytest.raises(StoryDiffusionError, match="^To panel: choose a panel other than the From panel"):
        session.animate(load_transition_pipeline("tiny"), 2, 2)


def test_every_caller_without_a_session_gets_a_fresh_one_of_their_own(tmp_path):
    first, second = session_of(None), session_of(None)
    assert first.workdir is None and second.workdir is None  # a call that never writes (a refusal) makes no folder
    try:
        assert isinstance(first, StudioSession) and first is not second and first.home != second.home
        assert session_of(first) is first
    finally:
        close_session(first)
        close_session(second)
    assert not first.workdir.exists() and not second.workdir.exists()
    close_session(None)  # a state that never held a session expires quietly


def test_a_run_stopped_before_its_first_panel_has_no_pages_and_no_error(tmp_path, tiny_sdxl):
    studio = StudioSession(workdir=tmp_path / "s")
    story = make_story()
    events = []
    for event in studio.generate(tiny_sdxl, story, story.settings, "tiny-sdxl"):
        events.append(event)
        studio.stop()  # at the very first step
    assert events[-1].result.cancelled and studio.panels() == []
    assert studio.typeset_if_drawn().as_tuple() == ([], None, None, None)
    # nothing was drawn, so the session is as before a run: no folder names, no half-made bank, no empty project
    assert studio.choose_layout("manga") is None and studio.layout == "manga"
    with pytest.raises(StoryDiffusionError, match="^generate the story first"):
        studio.regenerate_panel(tiny_sdxl, 0)
    with pytest.raises(StoryDiffusionError, match="nothing to save yet"):
        studio.save_project()


def test_a_redraw_is_a_run_of_the_session_that_stop_ends_leaving_everything_as_it_was(session, tiny_sdxl):
    files = {p: p.read_bytes() for p in session.run_dir.rglob("*") if p.is_file()}
    story, panels = session.story.to_dict(), [panel.image.tobytes() for panel in session.panels()]
    session.expect_run()  # the page's Regenerate: announced, waiting for the GPU
    assert session.stop()  # Stop reaches it
    with pytest.raises(GenerationCancelled, match="^Stopped: panel 2 is as it was"):
        session.regenerate_panel(tiny_sdxl, 1, prompt="[Leo] sleeps")
    assert not session.running and session.story.to_dict() == story
    assert [panel.image.tobytes() for panel in session.panels()] == panels
    assert {p: p.read_bytes() for p in session.run_dir.rglob("*") if p.is_file()} == files
    assert session.regenerate_panel(tiny_sdxl, 1, seed=5).seed == 5  # the next redraw is not cancelled by it


def test_while_a_story_draws_a_redraw_and_a_retypeset_are_refused_in_words(session, tiny_sdxl):
    story = make_story()
    for event in session.generate(tiny_sdxl, story, story.settings, "tiny-sdxl"):
        if isinstance(event, PanelDone) and event.panel.index == 0:
            with pytest.raises(StoryDiffusionError, match="^this session is already drawing a story, a panel"):
                session.regenerate_panel(tiny_sdxl, 0)
            with pytest.raises(StoryDiffusionError, match="^the story is being drawn: re-typeset the pages once"):
                session.retypeset("manga")
    assert session.typeset_if_drawn().as_tuple()[0] and session.pages.template == "classic"


def test_text_no_bundled_font_draws_is_named_on_the_finished_line(tmp_path, tiny_sdxl):
    from storydiffusion.studio_status import finished_message

    studio = StudioSession(workdir=tmp_path / "s")
    story = make_story("[Mia] flies a kite # สวัสดี 😀 Hi\n[Leo] reads # Leo reads.")
    finished = list(studio.generate(tiny_sdxl, story, story.settings, "tiny-sdxl"))[-1]
    studio.typeset_if_drawn()
    missing = [warning for warning in studio.page_warnings if "no bundled font has" in warning]
    assert len(missing) == 1 and missing[0].startswith("panel 1:") and "ส" in missing[0] and "😀" in missing[0]
    assert "Thai letters and emoji or symbols" in missing[0] and missing[0].endswith("they are left out")
    assert "- P" + missing[0][1:] in finished_message(finished.result, 2, studio.page_warnings)  # "Panel 1: ..."
    assert studio.retypeset("manga") and missing[0] in studio.page_warnings  # and after a re-typeset


def test_a_layout_chosen_while_the_story_draws_is_the_layout_of_its_pages(tmp_path, tiny_sdxl):
    studio = StudioSession(workdir=tmp_path / "s")
    story = make_story()
    for event in studio.generate(tiny_sdxl, story, story.settings, "tiny-sdxl"):
        if isinstance(event, PanelDone) and event.panel.index == 0:
            assert studio.choose_layout("manga") is None  # mid-run: kept for the pages to come
    assert studio.typeset_if_drawn().as_tuple()[0] and studio.pages.template == "manga"


def test_pages_read_right_to_left_in_any_layout_when_chosen_and_a_project_keeps_it(session, tiny_sdxl, tmp_path):
    """The Pages read radio: a Hebrew or Arabic comic in the classic layout reads right to left, the first
    panel at the top right; "as the layout" gives the layout's own order back."""

    def first_cell_x(pages):
        recorded = json.loads((pages.run_dir / "pages" / "pages.json").read_text())
        first = next(cell for cell in recorded["pages"][0]["cells"] if cell["panel"] == 1)
        return recorded["direction"], first["x"]

    direction, left_to_right = first_cell_x(session.retypeset("classic"))
    assert direction == "ltr"
    direction, right_to_left = first_cell_x(session.choose_direction("rtl"))
    assert direction == "rtl" and right_to_left > left_to_right
    assert first_cell_x(session.retypeset("classic"))[0] == "rtl"  # kept by later typesetting
    other = StudioSession(workdir=tmp_path / "other")
    other.load_project(session.save_project(), tiny_sdxl)
    assert other.direction == "rtl" and first_cell_x(other.pages)[0] == "rtl"
    assert first_cell_x(session.choose_direction(None))[0] == "ltr"  # as the classic layout reads
    with pytest.raises(StoryDiffusionError, match="direction"):
        session.choose_direction("up")
    assert session.direction is None
