"""StoryDiffusion studio: character-consistent visual stories with Consistent Self-Attention."""

import logging

__version__ = "0.1.0"

# A library logs, the program using it decides where logs go: without this, Python's last-resort handler
# would print every warning a second time beside the one the command line or the page already shows.
logging.getLogger(__name__).addHandler(logging.NullHandler())
