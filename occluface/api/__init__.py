"""occluface.api."""
