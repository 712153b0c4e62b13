"""occluface.eval."""
