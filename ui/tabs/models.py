"""Models panel: what is loaded, where, in which dtype, how much memory; unload."""

from __future__ import annotations

import gradio as gr

from ui.common import open_choices, standalone, user_errors

COLUMNS = ["model", "task", "device", "dtype", "parameters", "memory (MB)", "memory by device (MB)",
           "load (s)", "last used"]


def status_table(registry) -> list[list]:
    rows = []
    for s in registry.status():
        by_device = ", ".join(f"{d}: {mb}" for d, mb in s["memory_by_device_mb"].items())
        rows.append([s["model"], s["task"], s["device"], s["dtype"], f"{s['parameters']:,}",
                     s["memory_mb"], by_device, s["load_seconds"], s["last_used"]])
    return rows


def build(registry, settings, fetcher=None) -> None:  # fetcher unused: nothing is read from a URL here
    placement = registry.placement
    where = f"device_map=auto ({placement.device})" if placement.device_map else placement.device
    gr.Markdown(f"Models load on first use and stay cached (at most {settings.max_loaded}; the least "
                f"recently used is unloaded first). Device: **{where}**, dtype: **{placement.dtype_name}**.")
    table = gr.Dataframe(headers=COLUMNS, value=status_table(registry), interactive=False,
                         elem_id="models-table", label="Loaded pipelines")
    with gr.Row():
        # Any id is accepted (unload_fn checks it): API callers pass one from models_status.
        choice = open_choices(gr.Dropdown(label="Loaded pipeline", choices=[], allow_custom_value=True,
                                          elem_id="models-choice"))
        refresh = gr.Button("Refresh", elem_id="models-refresh")
        unload = gr.Button("Unload", variant="stop", elem_id="models-unload")

    def refresh_fn():
        """The pipelines loaded now.

        Returns:
            pipelines: a table of model, task, device, dtype, parameters, memory, load time and last use.
            loaded: the ids of the loaded pipelines, as unload_model takes them.
        """
        ids = [s["id"] for s in registry.status()]
        return status_table(registry), gr.Dropdown(choices=ids, value=ids[0] if ids else None)

    @user_errors
    def unload_fn(pipeline_id):
        """Unload a pipeline and free its memory.

        Args:
            pipeline_id: the pipeline's id, as models_status lists it.

        Returns:
            pipelines: the table of pipelines still loaded.
            loaded: their ids.
        """
        if not pipeline_id:
            raise gr.Error("Choose a loaded pipeline to unload.")
        if not registry.unload(pipeline_id):
            raise gr.Error(f"{pipeline_id} is not loaded any more.")
        return refresh_fn()

    refresh.click(refresh_fn, outputs=[table, choice], api_name="models_status")
    parent = gr.context.Context.block
    if isinstance(parent, gr.Tab):  # refresh whenever the panel is opened
        parent.select(refresh_fn, outputs=[table, choice], api_name=False, queue=False)
    unload.click(unload_fn, inputs=choice, outputs=[table, choice], api_name="unload_model")
    # On every page load, for the page's first look; not an API endpoint (models_status is).
    gr.context.Context.root_block.load(refresh_fn, outputs=[table, choice], api_visibility="private")


def demo(registry, settings) -> gr.Blocks:
    return standalone(build, registry, settings, "Models")
