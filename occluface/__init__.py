"""occluface."""
