"""Finding the file line of a key path a message names: what layout and run-record errors point at."""

import pytest

from storydiffusion.file_lines import line_of_named_path

YAML = """\
kind: pages
page:
  size: a4
  dpy: 3
pages:
  - rows:
      - {cells: 2}
      - height: 1
        cells: [1, -2]
"""


@pytest.mark.parametrize(
    "message,line",
    [
        ("pages[0].rows[1].cells[1] must be a positive number", 9),
        ("pages[0].rows[1] must be a mapping", 8),
        ("page: unknown key 'dpy'; use size, width, height and dpi", 4),
        ("settings: unknown setting(s) kind; known settings ...", 1),  # not under settings: the top-level key
        ("the page must be from 1 to 60000 pixels", 2),  # the first word that is a key of the file
        ("pages[0] has 2 rows that do not fit", 6),
        ("pages[3] has 2 rows", None),  # a path the file lacks names no line
        ("nothing here is a key", None),
    ],
)
def test_the_first_path_the_file_has_gives_the_line(message, line):
    assert line_of_named_path(YAML, message) == line


def test_json_with_tabs_and_a_text_that_does_not_parse():
    text = '{\n\t"panels": [\n\t\t{"sha256": 5},\n\t\t{"sha256": 6}\n\t]\n}\n'
    assert line_of_named_path(text, "panels[1].sha256 must be text", is_json=True) == 4
    assert line_of_named_path("a: [1,\n", "a must be") is None
    assert line_of_named_path("- 1\n- 2\n", "a must be") is None  # only a mapping has named keys
