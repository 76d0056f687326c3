"""Pictures of predictions: heatmap overlays with probability-mass contours, and figures."""

from .figures import fixation_figure, scatter_figure
from .overlay import density_overlay, mass_contours, mass_thresholds

__all__ = ["density_overlay", "fixation_figure", "mass_contours", "mass_thresholds", "scatter_figure"]
