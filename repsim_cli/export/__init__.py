"""Exports of results: heatmaps (matplotlib, imported lazily) and terminal rendering (rich)."""
