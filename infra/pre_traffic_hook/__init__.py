"""The pre-traffic hook's code (a zip Lambda asset: index.py + the bundled examples + expectations.json)."""
