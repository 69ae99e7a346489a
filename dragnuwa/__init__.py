"""dragnuwa: an open, trainable DragNUWA (arXiv 2308.08089).

Video generation from a first image (where), a text prompt (what) and drawn
trajectories (how it moves). See DESIGN.md / docs/architecture.md for the data flow.
"""

__version__ = "0.1.0"
