"""Pictures of predictions: heatmap overlays with probability-mass contours, and figures."""

from .overlay import density_overlay, mass_contours, mass_thresholds

__all__ = ["density_overlay", "mass_contours", "mass_thresholds"]
