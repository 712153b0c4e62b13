"""occluface.data."""
