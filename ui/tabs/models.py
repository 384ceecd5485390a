"""Models panel: what is loaded, where, in which dtype, how much memory; unloading for the operator."""

from __future__ import annotations

import secrets

import gradio as gr

from ui.common import standalone, user_errors

COLUMNS = ["model", "task", "device", "dtype", "parameters", "memory (MB)", "load (s)", "last used"]
WIDTHS = ["22%", "20%", "14%", "9%", "10%", "9%", "7%", "9%"]
NO_ADMIN = ("Unloading is for the server's operator: start the app with an admin token (environment "
            "variable `STUDIO_ADMIN_TOKEN`, 16 characters or more) and enter it here.")
WRONG_TOKEN = "Unloading is for the server's operator, and that admin token is not the one the server was started with."


def status_table(registry) -> list[list]:
    rows = []
    for s in registry.status():
        by_device = s["memory_by_device_mb"]
        # One device: its name. Several (device_map=auto): each with its share of the memory.
        device = ", ".join(f"{d} ({mb:,.0f} MB)" for d, mb in by_device.items()) if len(by_device) > 1 else s["device"]
        rows.append([s["model"], s["task"], device, s["dtype"], f"{s['parameters']:,}",
                     f"{s['memory_mb']:,.1f}", f"{s['load_seconds']:.1f}", s["last_used"]])
    return rows


def recent_unloads(registry) -> str:
    """What the registry unloaded by itself lately (to make room, or after running out of memory)."""
    events = list(getattr(registry, "events", ()))[-5:]
    return "Recently unloaded by the server:\n" + "\n".join(f"- {e}" for e in reversed(events)) if events else ""


def status(registry) -> tuple[list[list], str]:
    return status_table(registry), recent_unloads(registry)


def is_admin(settings, token: str | None) -> bool:
    """The operator's token, compared in constant time; no token set means nobody is admin."""
    expected = settings.admin_token
    return bool(expected) and secrets.compare_digest((token or "").encode(), expected.encode())


def build(registry, settings, fetcher=None) -> None:  # fetcher unused: nothing is read from a URL here
    placement = registry.placement
    where = f"device_map=auto ({placement.device})" if placement.device_map else placement.device
    gr.Markdown(f"Models load on first use and stay cached (at most {settings.max_loaded}; the least "
                f"recently used is unloaded first). Device: **{where}**, dtype: **{placement.dtype_name}**.")
    table = gr.Dataframe(headers=COLUMNS, value=status_table(registry), interactive=False, wrap=True,
                         column_widths=WIDTHS, elem_id="models-table", label="Loaded pipelines")
    events = gr.Markdown(recent_unloads(registry), elem_id="models-events")
    refresh = gr.Button("Refresh", elem_id="models-refresh")

    def models_status() -> tuple[list[list], str]:
        """What is loaded: one row per pipeline (model, task, device, dtype, parameters, memory, load time,
        last use), and what the server unloaded by itself lately.

        Returns:
            The table of loaded pipelines, and a note of recent automatic unloads (empty if none).
        """
        return status(registry)

    refresh.click(models_status, outputs=[table, events], api_name="models_status")
    parent = gr.context.Context.block
    if not settings.admin_token:
        gr.Markdown(NO_ADMIN, elem_id="models-admin-note")
        if isinstance(parent, gr.Tab):  # refresh whenever the panel is opened
            parent.select(models_status, outputs=[table, events], api_name=False, queue=False)
        return
    with gr.Accordion("Operator: unload models", open=False, elem_id="models-admin"):
        token = gr.Textbox(label="Admin token", type="password", elem_id="models-token")
        with gr.Row():
            choice = gr.Dropdown(label="Loaded pipeline", choices=[], elem_id="models-choice", scale=3,
                                 allow_custom_value=True)  # checked by registry.unload
            unload = gr.Button("Unload", variant="stop", elem_id="models-unload", scale=1)
            unload_all = gr.Button("Unload all", variant="stop", elem_id="models-unload-all", scale=1)

    def refresh_fn():
        """The pipelines loaded now.

        Returns:
            pipelines: a table of model, task, device, dtype, parameters, memory, load time and last use.
            loaded: the ids of the loaded pipelines, as unload_model takes them.
        """
        ids = [s["id"] for s in registry.status()]
        return *status(registry), gr.Dropdown(choices=ids, value=ids[0] if ids else None)

    @user_errors
    def unload_fn(key_id, admin_token):
        if not is_admin(settings, admin_token):
            raise gr.Error(WRONG_TOKEN, print_exception=False)
        if not key_id:
            raise gr.Error("Choose a loaded pipeline to unload.", print_exception=False)
        if not registry.unload(key_id):
            raise gr.Error(f"{key_id} is not loaded any more.", print_exception=False)
        gr.Info(f"Unloaded {key_id}.")
        return refresh_fn()

    @user_errors
    def unload_all_fn(admin_token):
        if not is_admin(settings, admin_token):
            raise gr.Error(WRONG_TOKEN, print_exception=False)
        count = len(registry.status())
        registry.unload_all()
        gr.Info(f"Unloaded {count} pipeline{'s' * (count != 1)}.")
        return refresh_fn()

    refresh.click(refresh_fn, outputs=[table, events, choice], api_name=False, queue=False)
    if isinstance(parent, gr.Tab):
        parent.select(refresh_fn, outputs=[table, events, choice], api_name=False, queue=False)
    # Hidden from the API docs and gradio_client; the check above refuses anyone without the token.
    unload.click(unload_fn, inputs=[choice, token], outputs=[table, events, choice], api_name="unload_model",
                 api_visibility="private")
    unload_all.click(unload_all_fn, inputs=token, outputs=[table, events, choice], api_name="unload_all",
                     api_visibility="private")


def demo(registry, settings) -> gr.Blocks:
    return standalone(build, registry, settings, "Models")
