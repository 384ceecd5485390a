"""One module per tab; each exposes build(registry, settings) and demo(registry, settings)."""
