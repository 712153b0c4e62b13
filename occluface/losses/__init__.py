"""occluface.losses."""
