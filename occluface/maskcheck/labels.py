"""The mask classifier's class names by head size (2: masked or not; 3: worn correctly, incorrectly, none)."""

CLASSES = {2: ("unmasked", "masked"), 3: ("none", "correct", "incorrect")}
