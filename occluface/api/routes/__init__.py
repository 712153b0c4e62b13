"""The API's routers: ``health`` (page and health check), ``recognition`` (identify, verify, roll-call,
mask check; open), ``subjects`` (list open; enrol, delete and thumbnails need an API key)."""
