"""occluface.faces."""
