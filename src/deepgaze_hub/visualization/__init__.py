"""Pictures of predictions: heatmap overlays with probability-mass contours, and figures."""

from .figures import fixation_figure, scatter_figure
from .overlay import density_overlay, mass_contours, mass_thresholds
from .png import save_png

__all__ = ["density_overlay", "fixation_figure", "mass_contours", "mass_thresholds", "save_png", "scatter_figure"]
