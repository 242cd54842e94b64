"""InsightFace's own code (detection, alignment, recognition) on a tiny random ONNX model pack built here,
through ``faces.load_face_model``, ``evaluate``'s face score and FaceID. Skipped where InsightFace is not
installed (it is optional: ``pip install insightface onnxruntime``)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

insightface = pytest.importorskip("insightface")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from storydiffusion.faces import INSIGHTFACE_DIM, load_face_model  # noqa: E402
from storydiffusion.pipeline import StoryPipeline  # noqa: E402
from storydiffusion.story import Story  # noqa: E402


def tiny_pack(folder: Path) -> Path:
    """``models/tinypack``: an SCRFD-shaped detector that finds a face at every anchor of every stride (one
    survives its NMS), and an ArcFace-shaped recognizer (pooled colour through a random 3x512 matrix)."""
    pack = folder / "models" / "tinypack"
    pack.mkdir(parents=True)
    constant = lambda name, value: numpy_helper.from_array(np.asarray(value), name)  # noqa: E731
    nodes = [helper.make_node("ReduceMean", ["input.1", "channels"], ["grey"], keepdims=1)]
    weights = [
        constant("channels", np.array([1], np.int64)),
        constant("rows", np.array([-1, 1], np.int64)),
        constant("anchors", np.array([2, 1], np.int64)),
        constant("zero", np.float32(0)),
        constant("score", np.float32(0.9)),
        constant("four", np.array([1, 4], np.int64)),
        constant("distance", np.ones(4, np.float32)),
        constant("ten", np.array([1, 10], np.int64)),
        constant("points", np.array([-0.5, -0.5, 0.5, -0.5, 0, 0, -0.4, 0.5, 0.4, 0.5], np.float32)),
    ]
    outputs = {"score": [], "bbox": [], "kps": []}
    for stride in (8, 16, 32):
        s = str(stride)
        nodes += [
            helper.make_node("AveragePool", ["grey"], ["pool" + s], kernel_shape=[stride] * 2, strides=[stride] * 2),
            helper.make_node("Reshape", ["pool" + s, "rows"], ["flat" + s]),
            helper.make_node("Tile", ["flat" + s, "anchors"], ["tiled" + s]),
            helper.make_node("Mul", ["tiled" + s, "zero"], ["none" + s]),
            helper.make_node("Add", ["none" + s, "score"], ["score_" + s]),
            helper.make_node("Tile", ["none" + s, "four"], ["box" + s]),
            helper.make_node("Add", ["box" + s, "distance"], ["bbox_" + s]),
            helper.make_node("Tile", ["none" + s, "ten"], ["kp" + s]),
            helper.make_node("Add", ["kp" + s, "points"], ["kps_" + s]),
        ]
        for kind in outputs:
            outputs[kind].append(kind + "_" + s)
    widths = {"score": 1, "bbox": 4, "kps": 10}
    declared = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n" + name.split("_")[1], widths[kind]])
        for kind, names in outputs.items()
        for name in names
    ]
    picture = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "h", "w"])
    _save(helper.make_graph(nodes, "detector", [picture], declared, weights), pack / "det_tiny.onnx")
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["colour"]),
        helper.make_node("MatMul", ["colour", "w"], ["fc1"]),
    ]
    face = helper.make_tensor_value_info("data", TensorProto.FLOAT, ["n", 3, 112, 112])
    embedding = helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["n", INSIGHTFACE_DIM])
    matrix = constant("w", rng.standard_normal((3, INSIGHTFACE_DIM)).astype(np.float32))
    _save(helper.make_graph(nodes, "recognizer", [face], [embedding], [matrix]), pack / "w600k_tiny.onnx")
    return pack


def _save(graph, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))


def picture(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (200, 160, 3), dtype=np.uint8))


def test_insightface_finds_and_embeds_a_face_with_the_tiny_pack(tmp_path):
    faces = load_face_model(tiny_pack(tmp_path))
    first, again, other = faces.embed_faces([picture(0), picture(0), picture(1)])
    assert first.shape == (INSIGHTFACE_DIM,) and abs(float(first.norm()) - 1) < 1e-5
    assert np.array_equal(first.numpy(), again.numpy()) and not np.array_equal(first.numpy(), other.numpy())


def test_faceid_draws_with_insightface_and_its_bank_names_the_face_model(tmp_path):
    pack = tiny_pack(tmp_path)
    picture(3).save(tmp_path / "alice.png")
    alice = {"description": "a woman", "reference": str(tmp_path / "alice.png"), "reference_scale": 0.8}
    settings = {"steps": 2, "id_images": 1, "style": "none", "reference_adapter": "face"}
    story = Story.from_dict({"characters": {"Alice": alice}, "panels": ["[Alice] reads"] * 2, "settings": settings})
    with_insightface = StoryPipeline.from_pretrained("tiny-sdxl", device="cpu", face_model=str(pack))
    result = with_insightface.generate(story)
    assert result.bank.signature["face_model"] == "insightface:tinypack" and len(result.panels) == 2
    stand_in = StoryPipeline.from_pretrained("tiny-sdxl", device="cpu").generate(story)
    assert stand_in.bank.signature["face_model"] == "tiny-face"
    assert result.panels[0].image.tobytes() != stand_in.panels[0].image.tobytes()
