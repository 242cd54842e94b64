"""Reference photos and control images uploaded to the studio: matched by file name, read only from
Gradio's record of uploads, named in the story by file name, never read from a path a story names."""

import pytest
from PIL import Image, ImageDraw

from storydiffusion.errors import StoryDiffusionError, StoryError
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import story_from_text
from storydiffusion.streaming import RunFinished
from storydiffusion.studio import StudioSession
from storydiffusion.studio_errors import failure_line
from storydiffusion.studio_uploads import (
    MAX_PHOTOS,
    StoryUploads,
    characters_rows,
    steering_from_ui,
    story_uploads,
    uploads_summary,
)

CHARACTERS = "[Mia] a girl with a red dress\n[Leo] a boy with round glasses"
STORY = "[Mia] flies a kite\n[Leo] reads\n[Mia] and [Leo] talk"


def make_story():
    settings = GenerationSettings(style="none", id_images=1, window=2, steps=2)
    return story_from_text(CHARACTERS, STORY, settings=settings)


def upload(folder, name, size=(48, 64), colour="orange"):
    """A file as Gradio records an upload: its path in a folder of its own, and the FileData record."""
    folder.mkdir(parents=True, exist_ok=True)
    picture = Image.new("RGB", size, "white")
    ImageDraw.Draw(picture).ellipse((4, 4, size[0] - 4, size[1] - 4), fill=colour)
    picture.save(folder / name)
    return {"path": str(folder / name), "meta": {"_type": "gradio.FileData"}, "orig_name": name}


def test_photos_are_matched_to_characters_and_controls_to_panels_by_file_name(tmp_path):
    files = [upload(tmp_path / "a", "mia.PNG"), upload(tmp_path / "b", "3-Canny.png")]
    uploads = [f["path"] for f in files]
    found = story_uploads(make_story(), [files[0]], [files[1]], uploads, 0.7, 0.5)
    assert set(found.photos) == {"Mia"} and found.photos["Mia"][0] == "mia.PNG"
    assert list(found.controls) == [2] and found.controls[2][:2] == ("canny", "3-Canny.png")
    story = found.apply(make_story())
    assert story.characters["Mia"].reference == "mia.PNG" and story.characters["Mia"].reference_scale == 0.7
    assert story.characters["Leo"].reference is None
    control = story.panels[2].control
    assert (control.kind, control.image, control.scale) == ("canny", "3-Canny.png", 0.5)


@pytest.mark.parametrize(
    "photo,control,expected",
    [
        ("Zed.png", None, "Reference photos: 'Zed.png' names no character of the story (characters: Mia, Leo)"),
        (None, "9-canny.png", "Control images: 9-canny.png is for panel 9, but the story has 3 panels"),
        (None, "pose.png", "Control images: 'pose.png' does not say its panel and kind; name it like 3-openpose.png"),
        (None, "2-sketch.png", "Control images: '2-sketch.png' does not say its panel and kind"),
    ],
)
def test_a_file_name_that_matches_nothing_is_refused_by_box(tmp_path, photo, control, expected):
    photos = [upload(tmp_path / "p", photo)] if photo else None
    controls = [upload(tmp_path / "c", control)] if control else None
    uploads = [f["path"] for f in (photos or []) + (controls or [])]
    with pytest.raises(StoryDiffusionError) as info:
        story_uploads(make_story(), photos, controls, uploads)
    assert str(info.value).startswith(expected)


def test_only_files_uploaded_to_this_studio_are_read(tmp_path):
    outside = upload(tmp_path / "server", "Mia.png")
    with pytest.raises(StoryDiffusionError, match="Reference photos: that file was not uploaded to this studio"):
        story_uploads(make_story(), [outside], None, uploads=[])
    with pytest.raises(StoryDiffusionError, match="Control images: expected an uploaded file"):
        story_uploads(make_story(), None, ["/etc/passwd"], uploads=["/etc/passwd"])


def test_too_many_photos_and_bad_pictures_are_refused(tmp_path):
    many = [upload(tmp_path / str(k), f"Mia{k}.png") for k in range(MAX_PHOTOS + 1)]
    with pytest.raises(StoryDiffusionError, match=f"at most {MAX_PHOTOS} may be uploaded"):
        story_uploads(make_story(), many, None, [f["path"] for f in many])
    wide = upload(tmp_path / "w", "Mia.png", size=(900, 100))
    with pytest.raises(StoryDiffusionError, match="a long side more than 8 times"):
        story_uploads(make_story(), [wide], None, [wide["path"]])
    twice = [upload(tmp_path / "x", "Mia.png"), upload(tmp_path / "y", "MIA.jpg")]
    with pytest.raises(StoryDiffusionError, match="two photos of Mia"):
        story_uploads(make_story(), twice, None, [f["path"] for f in twice])


def test_strengths_are_checked_under_their_labels(tmp_path):
    with pytest.raises(Exception, match="Photo strength must be between 0 and 2"):
        steering_from_ui(make_story(), (None, 5, None, 0.8), [])


def test_the_characters_table_shows_who_has_a_photo(tmp_path):
    photo = upload(tmp_path / "a", "leo.jpg")
    rows = characters_rows(CHARACTERS, [photo], [photo["path"]])
    assert rows == [["Mia", "a girl with a red dress", "—"], ["Leo", "a boy with round glasses", "leo.jpg"]]
    assert characters_rows(CHARACTERS, [photo], [])[1][2] == "—"  # not an upload to this studio: never read
    assert characters_rows("[Mia", None) == []  # half-typed: nothing to show yet
    notes = tmp_path / "b" / "Mia.txt"
    notes.parent.mkdir()
    notes.write_text("not a photo", encoding="utf-8")
    record = {"path": str(notes), "meta": {"_type": "gradio.FileData"}, "orig_name": "Mia.txt"}
    assert characters_rows(CHARACTERS, [record], [str(notes)])[0][2] == "—"  # another kind of file: no one's photo
    fake, long = tmp_path / "c" / "Mia.png", upload(tmp_path / "d", "Leo.png", size=(900, 16))
    fake.parent.mkdir()
    fake.write_text("not a picture", encoding="utf-8")
    fake_record = {**record, "path": str(fake), "orig_name": "Mia.png"}
    rows = characters_rows(CHARACTERS, [fake_record, long], [str(fake), long["path"]])
    assert [row[2] for row in rows] == ["—", "—"]  # a text named .png, a picture too long: what a run refuses


def test_every_wrong_upload_is_named_at_once(tmp_path):
    files = [
        upload(tmp_path / "a", "Zed.png"),
        upload(tmp_path / "b", "Mia.png", size=(900, 16)),
        upload(tmp_path / "c", "9-canny.png"),
        upload(tmp_path / "d", "pose.png"),
        upload(tmp_path / "e", "Leo.png"),
    ]
    with pytest.raises(StoryDiffusionError) as refused:
        story_uploads(make_story(), files[:2] + files[4:], files[2:4], [f["path"] for f in files])
    message = str(refused.value)
    for named in ("'Zed.png' names no character", "Mia.png", "9-canny.png is for panel 9", "'pose.png' does not say"):
        assert named in message
    assert "Leo.png" not in message  # the one good file
    line = failure_line(refused.value)  # on the page: a list, one file a line
    assert line.startswith("⚠ 4 uploads cannot be used:\n\n- ") and line.count("\n- ") == 4
    assert "9-canny.png is for panel 9" in line.splitlines()[4]


def test_the_uploads_summary_says_what_each_file_steers(tmp_path):
    files = [upload(tmp_path / "a", "Leo.png"), upload(tmp_path / "b", "03-depth.png")]
    found = story_uploads(make_story(), [files[0]], [files[1]], [f["path"] for f in files])
    assert uploads_summary(found) == "Ready: Leo.png steers Leo; 03-depth.png depth for panel 3."
    assert uploads_summary(StoryUploads()) == ""


def test_a_session_draws_with_its_uploads_and_redraws_with_them(tmp_path, tiny_sdxl):
    files = [upload(tmp_path / "a", "Mia.png"), upload(tmp_path / "b", "2-openpose.png", colour="blue")]
    steered = story_uploads(make_story(), [files[0]], [files[1]], [f["path"] for f in files], 0.8, 1.0)
    plain = StudioSession(workdir=tmp_path / "plain")
    list(plain.generate(tiny_sdxl, make_story(), make_story().settings, "tiny-sdxl"))
    studio = StudioSession(workdir=tmp_path / "steered")
    events = list(studio.generate(tiny_sdxl, make_story(), make_story().settings, "tiny-sdxl", steered))
    assert isinstance(events[-1], RunFinished)
    assert studio.story.characters["Mia"].reference == "Mia.png"  # a file name, never a server path
    changed = [a.image.tobytes() != b.image.tobytes() for a, b in zip(plain.panels(), studio.panels())]
    assert changed[0] and changed[1]  # Mia's identity image (photo), panel 2 (pose)
    redrawn = studio.regenerate_panel(tiny_sdxl, 1, seed=studio.panels()[1].seed)
    assert redrawn.image.tobytes() == studio.panels()[1].image.tobytes()
    plain.close()
    studio.close()


def test_a_story_naming_a_file_is_never_read_by_the_studio(tmp_path, tiny_sdxl):
    """A project (or any story) whose character names a path on the server: the studio refuses to read it."""
    secret = upload(tmp_path / "server", "secret.png")["path"]
    story = make_story()
    story.characters["Mia"] = story.characters["Mia"].__class__("Mia", "a girl", secret)
    studio = StudioSession(workdir=tmp_path / "s")
    events = list(studio.generate(tiny_sdxl, story, story.settings, "tiny-sdxl", StoryUploads()))
    assert isinstance(events[-1].error, StoryError) and "comes as an upload" in str(events[-1].error)
    studio.close()


def test_a_project_carries_its_photos_and_poses_and_redraws_with_them_elsewhere(tmp_path, tiny_sdxl):
    import json
    import zipfile

    from storydiffusion.errors import ProjectError
    from storydiffusion.project import load_project

    files = [upload(tmp_path / "a", "Mia.png"), upload(tmp_path / "b", "2-openpose.png", colour="blue")]
    steered = story_uploads(make_story(), [files[0]], [files[1]], [f["path"] for f in files], 0.8, 1.0)
    maker = StudioSession(workdir=tmp_path / "maker")
    list(maker.generate(tiny_sdxl, make_story(), make_story().settings, "tiny-sdxl", steered))
    saved = maker.save_project()
    with zipfile.ZipFile(saved) as archive:
        names = set(archive.namelist())
        document = json.loads(archive.read("project.json"))
    assert {"references/photo_01.png", "controls/panel_002.png"} <= names
    assert document["references"] == {"Mia": "references/photo_01.png"}
    assert document["story"]["characters"]["Mia"]["reference"] == "Mia.png"  # a file name, no path
    other = StudioSession(workdir=tmp_path / "other")
    other.load_project(saved, tiny_sdxl)
    redrawn = other.regenerate_panel(tiny_sdxl, 1, seed=maker.panels()[1].seed)
    assert redrawn.image.tobytes() == maker.panels()[1].image.tobytes()  # the pose came along
    # A hand-edited record naming another member is refused before anything is read.
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(forged, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "project.json":
                edited = json.loads(data)
                edited["references"] = {"Mia": "panels/panel_001.png"}
                data = json.dumps(edited).encode()
            target.writestr(item, data)
    with pytest.raises(ProjectError, match="reference photo entry 'Mia' does not match"):
        load_project(forged)
    maker.close()
    other.close()
