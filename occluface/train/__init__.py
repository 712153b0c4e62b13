"""occluface.train."""
