"""``python -m occluface.cli``: the same as the ``occluface`` command."""

from occluface.cli import main

if __name__ == "__main__":
    main()
