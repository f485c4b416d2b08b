"""Drift: what Braze holds now, compared with what brazecfg last confirmed (``brazecfg drift``)."""
