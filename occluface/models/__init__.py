"""occluface.models."""
