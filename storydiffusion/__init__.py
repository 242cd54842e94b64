"""StoryDiffusion studio: character-consistent visual stories with Consistent Self-Attention."""

__version__ = "0.1.0"
