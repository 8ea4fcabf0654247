"""leadflow: keeps leads moving through the funnel, with rules as code."""

__version__ = "0.1.0"
