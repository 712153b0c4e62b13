"""occluface.rollcall."""
