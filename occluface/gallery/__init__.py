"""occluface.gallery."""
