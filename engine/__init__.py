"""pipeline-studio engine: plain Python, no Gradio."""
