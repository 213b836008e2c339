//! View → RGBA pixels, axes, colourbars and SVG/PNG figures.
