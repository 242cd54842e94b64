"""The studio's MCP tools: typed, documented, checked like the page's fields, and served by Gradio's MCP server."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from pathlib import Path

import pytest

from storydiffusion.errors import StoryDiffusionError
from storydiffusion.model_pool import OFFLINE_MODEL, ModelPool
from storydiffusion.studio_mcp import StudioTools, add_mcp_tools

CHARACTERS = "[Mia] a girl in a red dress"
STORY = "[Mia] flies a kite # A windy day. @Mia: Look!\n[Mia] sits # Rest."
SMALL = {"style": "none", "steps": 2, "width": 64, "height": 64, "seed": 3}


def never_loaded(name, **_):
    raise AssertionError(f"a refused call loaded the model {name!r}")


@pytest.fixture
def refusing_tools():
    """Tools whose model must never load: every call to them is refused before any drawing."""
    return StudioTools(ModelPool(OFFLINE_MODEL, loader=never_loaded))


@pytest.fixture
def tools(tiny_sdxl):
    studio = StudioTools(ModelPool(OFFLINE_MODEL, loader=lambda name, **_: tiny_sdxl), keep=2)
    yield studio
    studio.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"steps": "abc"}, "Steps"),
        ({"steps": 0}, "Steps"),
        ({"width": 4100}, "Width"),
        ({"height": 65}, "Height"),
        ({"seed": -1}, "Seed"),
        ({"style": "watercolour"}, "Style"),
        ({"layout": "scroll"}, "Layout"),
        ({"title": 5}, "Title"),
        ({"story": ["[Mia] runs"]}, "Story"),
    ],
)
def test_generate_story_refuses_a_bad_value_by_its_field_before_loading_the_model(refusing_tools, changes, field):
    arguments = {"title": "Kite", "characters": CHARACTERS, "story": STORY, **SMALL, **changes}
    with pytest.raises(StoryDiffusionError, match=rf"^{field}\b"):
        refusing_tools.generate_story(**arguments)


@pytest.mark.parametrize("run", ["", "not-a-run", None, 7])
def test_compose_pages_refuses_a_run_it_does_not_know(refusing_tools, run):
    with pytest.raises(StoryDiffusionError, match=r"^Run: .*generate_story"):
        refusing_tools.compose_pages(run, "manga")


def test_generate_story_writes_pages_and_a_pdf_and_compose_pages_typesets_them_again(tools):
    made = tools.generate_story("Kite", CHARACTERS, STORY, layout="classic", **SMALL)
    assert made["pages"] and all(Path(page).is_file() and page.endswith(".png") for page in made["pages"])
    assert Path(made["pdf"]).read_bytes().startswith(b"%PDF")
    classic = Path(made["pages"][0]).read_bytes()

    again = tools.compose_pages(made["run"], "strip", title="Windy", story=STORY.replace("Rest.", "A nap."))
    assert again["run"] == made["run"] and Path(again["pdf"]).is_file()
    assert Path(again["pages"][0]).read_bytes() != classic
    right_to_left = tools.compose_pages(made["run"], "classic", direction="rtl")  # a comic in Hebrew or Arabic
    assert json.loads((Path(right_to_left["pages"][0]).parent / "pages.json").read_text())["direction"] == "rtl"
    with pytest.raises(StoryDiffusionError, match="^Pages read: 'up'"):
        tools.compose_pages(made["run"], "classic", direction="up")
    with pytest.raises(StoryDiffusionError, match=r"the prompt of panel \d changed") as refused:
        tools.compose_pages(made["run"], "classic", story=STORY.replace("sits", "jumps"))
    assert "call generate_story" in str(refused.value) and "Press Generate" not in str(refused.value)  # no buttons


@pytest.mark.slow
def test_only_the_last_runs_are_kept_and_older_ones_lose_their_files(tools):
    runs = [tools.generate_story("Kite", CHARACTERS, STORY, **SMALL) for _ in range(3)]
    assert not Path(runs[0]["pdf"]).exists()
    with pytest.raises(StoryDiffusionError, match="^Run:"):
        tools.compose_pages(runs[0]["run"])
    assert tools.compose_pages(runs[2]["run"], "manga")["pages"]


def test_add_mcp_tools_needs_a_blocks_context():
    with pytest.raises(Exception, match="Blocks"):
        add_mcp_tools(ModelPool(OFFLINE_MODEL, loader=never_loaded))


@pytest.fixture(scope="module")
def mcp_server():
    """A Blocks with only the tools, launched as an MCP server; the tiny model loads on the first drawing call."""
    pytest.importorskip("mcp")
    import gradio as gr

    with gr.Blocks() as demo:
        add_mcp_tools(ModelPool(OFFLINE_MODEL, device="cpu", fallback=False, hub_online=lambda: False))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, mcp_server=True)
    yield f"http://127.0.0.1:{port}"
    demo.close()


def test_the_mcp_schema_lists_both_tools_with_typed_documented_parameters(mcp_server):
    with urllib.request.urlopen(f"{mcp_server}/gradio_api/mcp/schema", timeout=30) as response:
        tools = {tool["name"]: tool for tool in json.load(response)}
    assert set(tools) == {"generate_story", "compose_pages"}
    generate = tools["generate_story"]
    assert "comic" in generate["description"].lower()
    properties = generate["inputSchema"]["properties"]
    assert list(properties) == [
        "title",
        "characters",
        "story",
        "style",
        "steps",
        "width",
        "height",
        "seed",
        "layout",
        "direction",
    ]
    assert set(generate["inputSchema"]["required"]) == {"title", "characters", "story"}
    assert properties["title"]["type"] == "string" and properties["seed"]["type"] == "integer"
    assert {"type": "integer"} in properties["steps"]["oneOf"]
    assert properties["layout"]["default"] == "classic"
    assert all(parameter.get("description") for parameter in properties.values()), properties
    assert "[NC]" in properties["story"]["description"] and "multiple of 8" in properties["width"]["description"]
    compose = tools["compose_pages"]["inputSchema"]
    assert compose["required"] == ["run"] and "generate_story" in compose["properties"]["run"]["description"]
    assert all(parameter.get("description") for parameter in compose["properties"].values())


async def call_tools(url: str, calls: list[tuple[str, dict]]) -> list:
    """Each call's result, from one MCP client session over Gradio's streamable HTTP transport."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with (
        streamable_http_client(f"{url}/gradio_api/mcp/") as (read, write, _),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        return [await client.call_tool(name, arguments) for name, arguments in calls]


@pytest.mark.slow
def test_an_mcp_client_draws_a_comic_and_reads_refusals_as_messages(mcp_server):
    story = {"title": "Kite", "characters": CHARACTERS, "story": STORY, **SMALL}
    made, unknown, bad_layout = asyncio.run(
        call_tools(
            mcp_server,
            [
                ("generate_story", story),
                ("compose_pages", {"run": "not-a-run"}),
                ("generate_story", {**story, "layout": "scroll"}),
            ],
        )
    )
    assert not made.isError, made.content
    files = json.loads(made.content[0].text)  # JSON, not Python's form of a mapping
    assert Path(files["pdf"]).is_file() and all(Path(page).is_file() for page in files["pages"])
    again = asyncio.run(call_tools(mcp_server, [("compose_pages", {"run": files["run"], "layout": "manga"})]))[0]
    assert not again.isError and json.loads(again.content[0].text)["run"] == files["run"]
    assert unknown.isError and unknown.content[0].text.startswith("Run: ")
    assert bad_layout.isError and bad_layout.content[0].text.startswith("Layout: ")
