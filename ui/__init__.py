"""pipeline-studio web UI (Gradio)."""
