"""The names of the image-text encoders the metrics use, apart from the encoders themselves, so that the
command line can list them without importing torch."""

DEFAULT_ENCODER = "transformers:openai/clip-vit-large-patch14"
TINY_ENCODER = "tiny"
ENCODER_KINDS = ("tiny", "open_clip:MODEL[/PRETRAINED]", "transformers:REPO_OR_FOLDER")
