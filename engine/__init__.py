"""pipeline-studio engine: plain Python, no Gradio."""

__version__ = "0.1.0"  # the one version string: app.py --version, the page footer, CHANGELOG.md
